//! Offset paging and sorting as zot's page finders do it: sort everything, then cut (the same
//! page, found without sorting what comes after it).
//!
//! Rules (zot's `Page()`): `limit 0` with `offset 0` (or no page) is everything; an offset at
//! or past the end is an empty page with the full `TotalCount`; `limit 0` with a positive
//! offset is an empty page; negative values are errors. `TotalCount` counts what the filters
//! left. Ties keep input order (a stable sort), which berth makes deterministic: repositories
//! by name, images by repository then tag. Only the items up to the page's end are sorted.
use std::cmp::Ordering;

use async_graphql::dynamic::ObjectAccessor;
use serde_json::{json, Value};

/// zot's `SortCriteria`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Relevance,
    UpdateTime,
    AlphabeticAsc,
    AlphabeticDsc,
    Severity,
    Stars,
    Downloads,
}

impl Sort {
    fn parse(name: &str) -> Option<Sort> {
        Some(match name {
            "RELEVANCE" => Sort::Relevance,
            "UPDATE_TIME" => Sort::UpdateTime,
            "ALPHABETIC_ASC" => Sort::AlphabeticAsc,
            "ALPHABETIC_DSC" => Sort::AlphabeticDsc,
            "SEVERITY" => Sort::Severity,
            "STARS" => Sort::Stars,
            "DOWNLOADS" => Sort::Downloads,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Relevance => "RELEVANCE",
            Sort::UpdateTime => "UPDATE_TIME",
            Sort::AlphabeticAsc => "ALPHABETIC_ASC",
            Sort::AlphabeticDsc => "ALPHABETIC_DSC",
            Sort::Severity => "SEVERITY",
            Sort::Stars => "STARS",
            Sort::Downloads => "DOWNLOADS",
        }
    }

    /// zot supports neither for repositories nor images (its message says "repos" for both).
    pub fn check(self) -> Result<Sort, String> {
        match self {
            Sort::Stars | Sort::Severity => Err(format!(
                "sorting repos by '{}' is not supported the pagination sort criteria is not supported",
                self.name()
            )),
            other => Ok(other),
        }
    }
}

/// `requestedPage`, read but not yet checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
    pub sort: Option<Sort>,
}

impl Page {
    /// The `requestedPage` argument (absent or null: everything, the query's default sort).
    pub fn from_args(args: &ObjectAccessor<'_>) -> Page {
        let Some(page) = args
            .get("requestedPage")
            .and_then(|value| value.object().ok())
        else {
            return Page::default();
        };
        let int = |name: &str| page.get(name).and_then(|v| v.i64().ok()).unwrap_or(0);
        Page {
            limit: int("limit"),
            offset: int("offset"),
            sort: page
                .get("sortBy")
                .and_then(|v| v.enum_name().ok().and_then(Sort::parse)),
        }
    }

    /// The sort to use and the checked bounds (zot's pagination errors).
    pub fn checked(self, default: Sort) -> Result<(Sort, usize, usize), String> {
        if self.limit < 0 {
            return Err("pagination limit has negative value".into());
        }
        if self.offset < 0 {
            return Err("pagination offset has negative value".into());
        }
        let sort = self.sort.unwrap_or(default).check()?;
        Ok((sort, self.limit as usize, self.offset as usize))
    }

    /// [`Page::checked`] for a list of repositories, which berth also sorts by `STARS` (most
    /// stars first, then by name) where zot answers an error: the web UI's explore page
    /// offers that order.
    pub fn checked_for_repos(self, default: Sort) -> Result<(Sort, usize, usize), String> {
        match self.sort {
            Some(Sort::Stars) => Page {
                sort: Some(Sort::AlphabeticAsc),
                ..self
            }
            .checked(default)
            .map(|(_, limit, offset)| (Sort::Stars, limit, offset)),
            _ => self.checked(default),
        }
    }
}

/// Sorts `items` (stably) and cuts the page; returns the page and zot's `PageInfo`.
pub fn cut<T>(
    items: Vec<T>,
    limit: usize,
    offset: usize,
    compare: impl FnMut(&T, &T) -> Ordering,
) -> (Vec<T>, Value) {
    let (positions, info) = select(&items, limit, offset, compare);
    (pick(items, &positions), info)
}

/// The positions in `items` of the page [`cut`] gives, in page order, and zot's `PageInfo`.
///
/// Rules: the page is exactly a stable sort's, ties broken by position; only the items up to
/// the page's end are sorted (a partial selection first), so a page of 10 out of 10,000
/// costs a linear pass, not a sort of everything.
pub fn select<T>(
    items: &[T],
    limit: usize,
    offset: usize,
    mut compare: impl FnMut(&T, &T) -> Ordering,
) -> (Vec<usize>, Value) {
    let total = items.len();
    let (start, end) = match (limit, offset) {
        (0, 0) => (0, total),
        _ => {
            let start = offset.min(total);
            (start, offset.saturating_add(limit).clamp(start, total))
        }
    };
    let mut order: Vec<usize> = Vec::new();
    if start < end {
        order = (0..total).collect();
        let mut by = |a: &usize, b: &usize| compare(&items[*a], &items[*b]).then(a.cmp(b));
        if end < total {
            order.select_nth_unstable_by(end, &mut by);
            order.truncate(end);
        }
        order.sort_unstable_by(&mut by);
        order.drain(..start);
    }
    let info = json!({"TotalCount": total, "ItemCount": order.len()});
    (order, info)
}

/// Moves the items at `positions` (distinct) out of `items`, in the order of `positions`;
/// drops the rest.
pub fn pick<T>(items: Vec<T>, positions: &[usize]) -> Vec<T> {
    let mut wanted: Vec<(usize, usize)> = positions
        .iter()
        .enumerate()
        .map(|(slot, &position)| (position, slot))
        .collect();
    wanted.sort_unstable();
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None)
        .take(positions.len())
        .collect();
    let mut wanted = wanted.into_iter().peekable();
    for (position, item) in items.into_iter().enumerate() {
        if let Some(&(_, slot)) = wanted.peek().filter(|(at, _)| *at == position) {
            slots[slot] = Some(item);
            wanted.next();
        }
    }
    slots
        .into_iter()
        .map(|item| item.expect("positions are distinct and inside items"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[u32], limit: usize, offset: usize) -> (Vec<u32>, Value) {
        cut(items.to_vec(), limit, offset, |a, b| a.cmp(b))
    }

    #[test]
    fn paging_follows_zot() {
        let items = [3, 1, 2];
        assert_eq!(page(&items, 0, 0).0, vec![1, 2, 3], "limit 0: everything");
        assert_eq!(page(&items, 2, 0).0, vec![1, 2]);
        assert_eq!(page(&items, 2, 2).0, vec![3]);
        let (empty, info) = page(&items, 2, 5);
        assert!(empty.is_empty());
        assert_eq!(info, json!({"TotalCount": 3, "ItemCount": 0}));
        assert!(
            page(&items, 0, 1).0.is_empty(),
            "limit 0 with an offset: empty"
        );
        assert_eq!(page(&[], 0, 0).1, json!({"TotalCount": 0, "ItemCount": 0}));
    }

    #[test]
    fn pages_equal_a_stable_sort_then_a_cut() {
        // Keys with many ties: the tie-break must be the input order, as a stable sort's.
        let mut seed = 7u64;
        let items: Vec<(u8, usize)> = (0..200)
            .map(|id| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 59) as u8, id)
            })
            .collect();
        let by_key = |a: &(u8, usize), b: &(u8, usize)| a.0.cmp(&b.0);
        let mut sorted = items.clone();
        sorted.sort_by(by_key);
        for (limit, offset) in [
            (0, 0),
            (10, 0),
            (10, 5),
            (1, 199),
            (7, 190),
            (300, 0),
            (0, 3),
        ] {
            let (page, info) = cut(items.clone(), limit, offset, by_key);
            let expected: Vec<_> = match (limit, offset) {
                (0, 0) => sorted.clone(),
                _ => sorted.iter().skip(offset).take(limit).cloned().collect(),
            };
            assert_eq!(page, expected, "limit {limit} offset {offset}");
            assert_eq!(
                info,
                json!({"TotalCount": 200, "ItemCount": expected.len()})
            );
        }
    }

    #[test]
    fn bad_pages_are_zot_errors() {
        let bad = Page {
            limit: -1,
            ..Page::default()
        };
        assert_eq!(
            bad.checked(Sort::Relevance).unwrap_err(),
            "pagination limit has negative value"
        );
        let bad = Page {
            offset: -1,
            ..Page::default()
        };
        assert_eq!(
            bad.checked(Sort::Relevance).unwrap_err(),
            "pagination offset has negative value"
        );
        let stars = Page {
            sort: Some(Sort::Stars),
            ..Page::default()
        };
        assert!(stars
            .checked(Sort::Relevance)
            .unwrap_err()
            .starts_with("sorting repos by 'STARS'"));
        assert_eq!(
            stars.checked_for_repos(Sort::Relevance),
            Ok((Sort::Stars, 0, 0))
        );
        let negative = Page { limit: -1, ..stars };
        assert!(negative.checked_for_repos(Sort::Relevance).is_err());
    }
}
