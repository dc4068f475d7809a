//! Property tests: range parsing agrees with plain integer arithmetic, and the source-list
//! operations keep their promises (moves are reversible, delete never reorders the rest,
//! nothing is half-applied).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cascade_core::{EntryId, EntrySource, IpRange, SourceList};
use proptest::prelude::*;

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

proptest! {
    // A start-end range contains exactly the addresses between its ends, inclusive.
    #[test]
    fn span_contains_matches_integers(a: u32, b: u32, probe: u32, spaces in "[ ]{0,2}") {
        let (lo, hi) = (a.min(b), a.max(b));
        let text = format!("{}{spaces}-{spaces}{}", v4(lo), v4(hi));
        let r = IpRange::parse(&text).unwrap();
        prop_assert_eq!(r.contains(v4(probe)), lo <= probe && probe <= hi);
        prop_assert!(!r.contains(IpAddr::V6(Ipv6Addr::from(u128::from(probe)))));
        if lo < hi {
            let reversed = format!("{}-{}", v4(hi), v4(lo));
            prop_assert_eq!(IpRange::parse(&reversed).unwrap_err().code(), "range.reversed");
        }
    }

    // A CIDR block contains exactly the addresses sharing its prefix; host bits are refused.
    #[test]
    fn cidr_contains_matches_mask(base: u32, len in 0u8..=32, probe: u32) {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = base & mask;
        let r = IpRange::parse(&format!("{}/{len}", v4(net))).unwrap();
        prop_assert_eq!(r.contains(v4(probe)), probe & mask == net);
        if base != net {
            let err = IpRange::parse(&format!("{}/{len}", v4(base))).unwrap_err();
            prop_assert_eq!(err.code(), "range.host_bits");
        }
    }

    // IPv6 spans behave like u128 intervals.
    #[test]
    fn v6_span(a: u128, b: u128, probe: u128) {
        let (lo, hi) = (a.min(b), a.max(b));
        let r = IpRange::parse(&format!("{}-{}", Ipv6Addr::from(lo), Ipv6Addr::from(hi))).unwrap();
        // IPv4-mapped probes are read as IPv4, so only check non-mapped ones.
        let p = Ipv6Addr::from(probe);
        prop_assume!(p.to_ipv4_mapped().is_none());
        prop_assert_eq!(r.contains(IpAddr::V6(p)), lo <= probe && probe <= hi);
    }

    // Display then parse gives the same range; arbitrary text never panics the parser.
    #[test]
    fn display_round_trips(a: u32, b: u32, junk in "\\PC{0,40}") {
        let r = IpRange::parse(&format!("{}-{}", v4(a.min(b)), v4(a.max(b)))).unwrap();
        prop_assert_eq!(IpRange::parse(&r.to_string()).unwrap(), r);
        let _ = IpRange::parse(&junk);
    }
}

fn list_of(n: usize) -> SourceList {
    let mut list = SourceList::default();
    for i in 0..n {
        let range = IpRange::parse(&format!("10.0.{i}.0/24")).unwrap();
        let url = format!("http://mirror{i}.example/").parse().unwrap();
        list = list.add(range, EntrySource::Url(url)).0;
    }
    list
}

fn ids(list: &SourceList) -> Vec<EntryId> {
    list.iter().map(|e| e.id).collect()
}

proptest! {
    // Moving an entry down then up (or up then down) gives back the same list.
    #[test]
    fn moves_are_reversible(n in 2usize..12, pick in any::<prop::sample::Index>()) {
        let list = list_of(n);
        let id = list.as_slice()[pick.index(n)].id;
        if let Ok(down) = list.move_down(id) {
            prop_assert_eq!(&down.move_up(id).unwrap(), &list);
        }
        if let Ok(up) = list.move_up(id) {
            prop_assert_eq!(&up.move_down(id).unwrap(), &list);
        }
    }

    // A move swaps exactly two neighbours; the first cannot go up, the last cannot go down.
    #[test]
    fn move_swaps_neighbours(n in 1usize..12, pick in any::<prop::sample::Index>()) {
        let list = list_of(n);
        let i = pick.index(n);
        let id = list.as_slice()[i].id;
        let before = ids(&list);
        match list.move_up(id) {
            Ok(up) => {
                let mut want = before.clone();
                want.swap(i - 1, i);
                prop_assert_eq!(ids(&up), want);
            }
            Err(e) => {
                prop_assert_eq!(i, 0);
                prop_assert_eq!(e.code(), "list.cannot_move");
            }
        }
        match list.move_down(id) {
            Ok(down) => {
                let mut want = before.clone();
                want.swap(i, i + 1);
                prop_assert_eq!(ids(&down), want);
            }
            Err(e) => {
                prop_assert_eq!(i, n - 1);
                prop_assert_eq!(e.code(), "list.cannot_move");
            }
        }
    }

    // Delete removes exactly the checked ids and keeps the others in their order; an unknown
    // id among them changes nothing.
    #[test]
    fn delete_keeps_order(n in 1usize..12, mask: u16, bogus in 100u32..200) {
        let list = list_of(n);
        let chosen: BTreeSet<EntryId> = list
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, e)| e.id)
            .collect();
        match list.delete(&chosen) {
            Ok(after) => {
                let want: Vec<EntryId> = ids(&list).into_iter().filter(|id| !chosen.contains(id)).collect();
                prop_assert_eq!(ids(&after), want);
            }
            Err(e) => {
                prop_assert!(chosen.is_empty());
                prop_assert_eq!(e.code(), "list.nothing_selected");
            }
        }
        let mut with_bogus = chosen.clone();
        with_bogus.insert(EntryId(bogus));
        prop_assert_eq!(list.delete(&with_bogus).unwrap_err().code(), "list.unknown_id");
        prop_assert_eq!(list.len(), n);
    }

    // Add appends with a fresh id; edit keeps the place and the id.
    #[test]
    fn add_appends_and_edit_keeps_place(n in 0usize..12, pick in any::<prop::sample::Index>()) {
        let list = list_of(n);
        let range = IpRange::parse("192.168.0.0/16").unwrap();
        let src = EntrySource::Url("http://new.example/".parse().unwrap());
        let (added, id) = list.add(range, src.clone());
        prop_assert_eq!(added.len(), n + 1);
        prop_assert_eq!(added.as_slice()[n].id, id);
        prop_assert!(!ids(&list).contains(&id));
        prop_assert_eq!(&added.as_slice()[..n], list.as_slice());
        if n > 0 {
            let i = pick.index(n);
            let target = list.as_slice()[i].id;
            let edited = list.edit(target, range, src.clone()).unwrap();
            prop_assert_eq!(ids(&edited), ids(&list));
            prop_assert_eq!(&edited.as_slice()[i].source, &src);
        }
        prop_assert_eq!(list.edit(EntryId(999), range, src).unwrap_err().code(), "list.unknown_id");
    }
}
