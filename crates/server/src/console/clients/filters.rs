//! The Clients list's filters, sort and page as the query string carries them: read with a
//! message per bad field, turned into the store's query, and written back into links.

use cascade_core::{Category, IpRange};
use cascade_proto::{ClientState, Compliance};

use crate::console::form::{FieldErrors, Form};
use crate::store::{ClientQuery, ClientSort};

/// The longest search text and IP range a filter takes (longer ones are refused with a
/// short message, never echoed whole).
const MAX_FILTER: usize = 200;

/// The list's filters, sort and page, as the query string carries them.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Search text.
    pub q: String,
    /// `all`, `ok`, `failed` or `stale` (stale or never seen).
    pub show: String,
    /// A source its last update tried (`agent:…`, `url:…`, `server`), or `""`.
    pub source: String,
    /// An IP range, or `""`.
    pub range: String,
    /// A category for `compliance`, or `""`.
    pub category: String,
    /// A compliance state in `category` (`behind`), or `""`.
    pub compliance: String,
    /// `name`, `ip` or `seen`.
    pub sort: String,
    /// `asc` or `desc`.
    pub order: String,
    /// 1-based page.
    pub page: usize,
}

impl Filters {
    /// Reads the query string; bad values are dropped with a message per field.
    pub fn parse(raw: &str, errors: &mut FieldErrors) -> Filters {
        let q = Form::parse(raw.as_bytes());
        let mut bounded = |name: &str, label: &str| {
            let v = q.get(name).trim();
            if v.chars().count() > MAX_FILTER {
                errors.set(
                    name,
                    format!(
                        "{label}: at most {MAX_FILTER} characters (got {})",
                        v.chars().count()
                    ),
                );
                String::new()
            } else {
                v.to_owned()
            }
        };
        let search = bounded("q", "search");
        let source = bounded("source", "source");
        let range = bounded("range", "IP range");
        if !range.is_empty() && range.parse::<IpRange>().is_err() {
            errors.set(
                "range",
                format!(
                    "IP range: `{}` is not an address, CIDR block or FROM-TO range",
                    cascade_proto::limits::cut(&range)
                ),
            );
        }
        let category = match q.get("category") {
            c if Category::ALL.iter().any(|k| k.as_str() == c) => c.to_owned(),
            _ => String::new(),
        };
        let compliance = match q.get("compliance") {
            c if Compliance::parse(c).is_some() && !category.is_empty() => c.to_owned(),
            _ => String::new(),
        };
        Filters {
            q: search,
            show: match q.get("show") {
                s @ ("ok" | "stale" | "failed") => s.to_owned(),
                _ => "all".to_owned(),
            },
            source,
            range,
            category,
            compliance,
            sort: match q.get("sort") {
                s @ ("ip" | "seen") => s.to_owned(),
                _ => "name".to_owned(),
            },
            order: if q.get("order") == "desc" {
                "desc"
            } else {
                "asc"
            }
            .to_owned(),
            page: q
                .get("page")
                .parse::<usize>()
                .unwrap_or(1)
                .clamp(1, 1_000_000),
        }
    }

    /// The SQL part of the filters.
    pub(super) fn query(&self) -> ClientQuery {
        ClientQuery {
            search: Some(self.q.clone()).filter(|s| !s.is_empty()),
            states: match self.show.as_str() {
                "ok" => vec![ClientState::Ok],
                "failed" => vec![ClientState::Failed],
                "stale" => vec![ClientState::Stale, ClientState::Never],
                _ => Vec::new(),
            },
            source: Some(self.source.clone()).filter(|s| !s.is_empty()),
            sort: match self.sort.as_str() {
                "ip" => ClientSort::Ip,
                "seen" => ClientSort::LastSeen,
                _ => ClientSort::Name,
            },
            descending: self.order == "desc",
            ip_keys: self.range.parse::<IpRange>().ok().map(|r| {
                (
                    crate::store::ip_key(r.start()),
                    crate::store::ip_key(r.end()),
                )
            }),
            installed: None,
        }
    }

    /// The query string of these filters with `changes` applied (`("page", "2")`), for links.
    pub fn link(&self, changes: &[(&str, &str)]) -> String {
        let page = self.page.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("q", &self.q),
            ("show", &self.show),
            ("source", &self.source),
            ("range", &self.range),
            ("category", &self.category),
            ("compliance", &self.compliance),
            ("sort", &self.sort),
            ("order", &self.order),
            ("page", &page),
        ];
        for (k, v) in changes {
            if let Some(p) = pairs.iter_mut().find(|p| p.0 == *k) {
                p.1 = v;
            }
        }
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            let default = matches!(
                (k, v),
                ("show", "all") | ("sort", "name") | ("order", "asc") | ("page", "1")
            );
            if !v.is_empty() && !default {
                out.append_pair(k, v);
            }
        }
        let q = out.finish();
        if q.is_empty() {
            String::new()
        } else {
            format!("?{q}")
        }
    }

    /// The link that sorts by `column` (the other way round when it is the current sort).
    pub fn sort_link(&self, column: &str) -> String {
        let order = if self.sort == column && self.order == "asc" {
            "desc"
        } else {
            "asc"
        };
        format!(
            "/clients{}",
            self.link(&[("sort", column), ("order", order), ("page", "1")])
        )
    }

    /// The arrow shown after the sorted column's name (`aria-sort` says it to screen
    /// readers), `""` for the others.
    pub fn arrow(&self, column: &str) -> &'static str {
        match self.aria_sort(column) {
            "ascending" => "▲",
            "descending" => "▼",
            _ => "",
        }
    }

    /// `aria-sort` for `column`.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (self.sort == column, self.order.as_str()) {
            (false, _) => "none",
            (true, "desc") => "descending",
            (true, _) => "ascending",
        }
    }

    /// Whether any filter is set (not the sort or page).
    pub fn any(&self) -> bool {
        !(self.q.is_empty()
            && self.show == "all"
            && self.source.is_empty()
            && self.range.is_empty()
            && self.compliance.is_empty())
    }
}
