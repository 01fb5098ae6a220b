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

    /// [`Filter::admits_platforms`] over stored platforms, read in place: a repository list
    /// asks it of every repository, and copying each platform cost more than the test.
    pub fn admits_stored<'a>(
        &self,
        platforms: impl IntoIterator<Item = &'a berth_storage::search::Platform>,
    ) -> bool {
        let mut platforms = platforms.into_iter().peekable();
        if platforms.peek().is_none() {
            return self.os.is_none() && self.arch.is_none();
        }
        let wants = |wanted: &Option<Vec<String>>, matches: &dyn Fn(&str) -> bool| match wanted {
            None => true,
            Some(list) => list.is_empty() || list.iter().any(|w| matches(w)),
        };
        platforms.any(|platform| {
            wants(&self.os, &|w| w.eq_ignore_ascii_case(&platform.os))
                && wants(&self.arch, &|w| {
                    arch_is(w, &platform.arch, &platform.variant)
                })
        })
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

/// Whether `wanted` names `arch`, or `arch/variant` when there is a variant (zot's `Arch`),
/// ignoring ASCII case.
fn arch_is(wanted: &str, arch: &str, variant: &str) -> bool {
    if variant.is_empty() {
        return wanted.eq_ignore_ascii_case(arch);
    }
    let wanted = wanted.as_bytes();
    wanted.len() == arch.len() + 1 + variant.len()
        && wanted[..arch.len()].eq_ignore_ascii_case(arch.as_bytes())
        && wanted[arch.len()] == b'/'
        && wanted[arch.len() + 1..].eq_ignore_ascii_case(variant.as_bytes())
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

    #[test]
    fn stored_platforms_are_judged_as_their_os_arch_pairs() {
        use berth_storage::search::Platform;
        let platform = |os: &str, arch: &str, variant: &str| Platform {
            os: os.into(),
            arch: arch.into(),
            variant: variant.into(),
        };
        let stored = [
            vec![],
            vec![platform("linux", "amd64", "")],
            vec![
                platform("linux", "arm64", "v8"),
                platform("Windows", "AMD64", ""),
            ],
            vec![platform("linux", "arm", "v7")],
        ];
        let wanted = |list: &[&str]| Some(list.iter().map(|w| w.to_string()).collect());
        let filters = [
            Filter::default(),
            Filter {
                os: wanted(&[]),
                ..Filter::default()
            },
            Filter {
                os: wanted(&["linux"]),
                ..Filter::default()
            },
            Filter {
                os: wanted(&["windows"]),
                arch: wanted(&["amd64"]),
                ..Filter::default()
            },
            Filter {
                arch: wanted(&["arm64"]),
                ..Filter::default()
            },
            Filter {
                arch: wanted(&["arm64/v8", "arm/v7"]),
                ..Filter::default()
            },
            Filter {
                arch: wanted(&["arm/v"]),
                ..Filter::default()
            },
            Filter {
                arch: wanted(&["arm64v8"]),
                ..Filter::default()
            },
        ];
        for filter in &filters {
            for platforms in &stored {
                let pairs: Vec<(String, String)> = platforms
                    .iter()
                    .map(super::super::images::os_arch)
                    .collect();
                assert_eq!(
                    filter.admits_stored(platforms),
                    filter.admits_platforms(pairs.iter().map(|(o, a)| (o.as_str(), a.as_str()))),
                    "{filter:?} {platforms:?}"
                );
            }
        }
        assert!(filters[5].admits_stored(&stored[2]) && filters[5].admits_stored(&stored[3]));
        assert!(!filters[6].admits_stored(&stored[3]) && !filters[7].admits_stored(&stored[2]));
    }
}
