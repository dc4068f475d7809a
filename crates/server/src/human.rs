//! Times and durations for people, shared by the console and the CLI so both say the same:
//! `2023-11-14 22:13:20 UTC`, `3 min ago`, `2 h`.

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A number of seconds for people (`90 s`, `5 min`, `2 h`, `3 d`).
pub fn duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// How long ago `then` was at `now`, for people (`just now`, `3 min ago`, `in the future`).
pub fn ago(then: i64, now: i64) -> String {
    let d = now.saturating_sub(then);
    if d < 0 {
        "in the future".to_owned()
    } else if d < 10 {
        "just now".to_owned()
    } else {
        format!("{} ago", duration(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Durations pick the unit a person would, and "ago" reads from the present.
    #[test]
    fn durations_and_ago() {
        assert_eq!(duration(90), "90 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(3 * 86_400), "3 d");
        assert_eq!(ago(100, 105), "just now");
        assert_eq!(ago(100, 100 + 180), "3 min ago");
        assert_eq!(ago(200, 100), "in the future");
    }
}
