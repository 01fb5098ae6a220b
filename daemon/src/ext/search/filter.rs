//! zot's `Filter` input: OS and architecture (case-insensitive, `arch` or `arch/variant`),
//! signed, starred, bookmarked. Images ignore the starred and bookmarked flags, as zot's.
use async_graphql::dynamic::ObjectAccessor;

use super::limits::MAX_SEARCH_TEXT;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `None`: not given; `Some([])` given empty (then platform-less images fail, as zot).
    pub os: Option<Vec<String>>,
    pub arch: Option<Vec<String>>,
    pub signed: Option<bool>,
    pub bookmarked: Option<bool>,
    pub starred: Option<bool>,
}

fn strings(filter: &ObjectAccessor<'_>, name: &str) -> Result<Option<Vec<String>>, String> {
    let Some(value) = filter.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let values: Vec<String> = match value.list() {
        Ok(list) => list
            .iter()
            .filter_map(|v| v.string().ok().map(str::to_owned))
            .collect(),
        Err(_) => value.string().ok().map(str::to_owned).into_iter().collect(),
    };
    let parameter = name.to_lowercase();
    if let Some(long) = values.iter().find(|v| v.len() > MAX_SEARCH_TEXT) {
        return Err(format!(
            "max string size limit exceeded for {parameter} parameter. max={MAX_SEARCH_TEXT} current={} request parameter has invalid value",
            long.len()
        ));
    }
    Ok(Some(
        values
            .into_iter()
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
            .collect(),
    ))
}

impl Filter {
    pub fn from_args(args: &ObjectAccessor<'_>) -> Result<Filter, String> {
        let Some(filter) = args.get("filter").and_then(|value| value.object().ok()) else {
            return Ok(Filter::default());
        };
        let flag = |name: &str| filter.get(name).and_then(|v| v.boolean().ok());
        Ok(Filter {
            arch: strings(&filter, "Arch")?,
            os: strings(&filter, "Os")?,
            signed: flag("HasToBeSigned"),
            bookmarked: flag("IsBookmarked"),
            starred: flag("IsStarred"),
        })
    }

    /// zot's platform rule over a list of (os, arch) pairs.
    pub fn admits_platforms<'a>(
        &self,
        platforms: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> bool {
        let mut platforms = platforms.into_iter().peekable();
        if platforms.peek().is_none() {
            return self.os.is_none() && self.arch.is_none();
        }
        platforms.any(|platform| self.admits_platform(platform))
    }

    pub fn admits_platform(&self, (os, arch): (&str, &str)) -> bool {
        let matches = |wanted: &Option<Vec<String>>, have: &str| match wanted {
            None => true,
            Some(list) if list.is_empty() => true,
            Some(list) => list.iter().any(|w| w.eq_ignore_ascii_case(have)),
        };
        matches(&self.os, os) && matches(&self.arch, arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_rules_follow_zot() {
        let none = Filter::default();
        assert!(none.admits_platforms([]));
        let arm = Filter {
            arch: Some(vec!["arm64/v8".into()]),
            ..Filter::default()
        };
        assert!(arm.admits_platforms([("linux", "amd64"), ("linux", "ARM64/v8")]));
        assert!(!arm.admits_platforms([("linux", "amd64")]));
        assert!(
            !arm.admits_platforms([]),
            "a platform filter refuses platform-less images"
        );
        let empty = Filter {
            os: Some(vec![]),
            ..Filter::default()
        };
        assert!(!empty.admits_platforms([]));
        assert!(empty.admits_platforms([("linux", "amd64")]));
    }
}
