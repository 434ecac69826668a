//! The command routing table: every command pattern of every plugin, matched
//! in one pass with a `RegexSet`.
//!
//! Public so that it can be benchmarked and reused; the engine builds one
//! from the loaded plugins' manifests.
//!
//! # The routing budget
//!
//! regex refuses to compile a set past a size limit. Patterns that compile
//! one by one can still make a set that does not, so one plugin could stop
//! the whole table (and the engine) from building. Each plugin therefore gets
//! a budget, [`PLUGIN_BUDGET`], checked at validation ([`check_budget`]: its
//! patterns compiled as one set within it), and the combined table's limit
//! is the sum of its plugins' budgets plus [`SLACK`]. Compiled sizes add up
//! across patterns, so the combined set fits; should it not, [`Routes::admit`]
//! leaves plugins out, last loaded first, rather than fail.

use regex::{CaptureLocations, Regex, RegexSet, RegexSetBuilder};

pub use crate::library::compile_pattern;

/// The compiled size one plugin's command patterns may take in the routing
/// table: regex's default limit for one regex, so that any plugin with a
/// single pattern that compiles fits.
pub const PLUGIN_BUDGET: usize = 10 << 20;

/// Headroom of the combined table over the sum of its plugins' budgets.
pub const SLACK: usize = 1 << 20;

/// Checks that one plugin's patterns fit [`PLUGIN_BUDGET`], compiled as one
/// set as the combined table compiles them. The error is regex's
/// (`CompiledTooBig` when over the budget).
pub fn check_budget<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<(), regex::Error> {
    RegexSetBuilder::new(patterns)
        .size_limit(PLUGIN_BUDGET)
        .build()
        .map(drop)
}

/// The size limit of a table of `plugins` plugins.
fn limit_for(plugins: usize) -> usize {
    plugins.saturating_mul(PLUGIN_BUDGET).saturating_add(SLACK)
}

/// One command of one plugin.
pub struct Route {
    /// Index of the plugin, in load order.
    pub plugin: usize,
    /// Index of the command in the plugin's manifest.
    pub command: u32,
    /// The anchored pattern.
    pub regex: Regex,
}

/// All routes, in plugin-load order then manifest order: the order in which
/// a command text's matches run and their replies are delivered.
pub struct Routes {
    set: RegexSet,
    /// The routes, in matching order.
    pub routes: Vec<Route>,
}

impl Routes {
    /// Builds the table; `plugins` gives each plugin's compiled patterns.
    /// Its size limit is the sum of the plugins' budgets (see the module
    /// docs), so with patterns that passed [`check_budget`] it builds.
    pub fn new<'a>(plugins: impl IntoIterator<Item = &'a [Regex]>) -> Result<Self, regex::Error> {
        let plugins: Vec<&[Regex]> = plugins.into_iter().collect();
        Routes::build(&plugins, limit_for(plugins.len()))
    }

    /// Builds the table from as many of `plugins` as fit, in order: while
    /// the combined set does not build, the last plugin is left out (and
    /// regex's error logged). Returns the table and how many plugins it
    /// holds: the first `n`. Never fails: a table of no plugins is empty.
    pub fn admit(plugins: &[&[Regex]]) -> (Self, usize) {
        Routes::admit_within(plugins, limit_for)
    }

    fn admit_within(plugins: &[&[Regex]], limit: impl Fn(usize) -> usize) -> (Self, usize) {
        for n in (1..=plugins.len()).rev() {
            match Routes::build(&plugins[..n], limit(n)) {
                Ok(routes) => return (routes, n),
                Err(e) => log::warn!(
                    "the command routing table of {n} plugin(s) does not build ({}); leaving out the last one",
                    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            }
        }
        let empty = Routes {
            set: RegexSet::empty(),
            routes: Vec::new(),
        };
        (empty, 0)
    }

    fn build(plugins: &[&[Regex]], size_limit: usize) -> Result<Self, regex::Error> {
        let mut routes = Vec::new();
        for (plugin, patterns) in plugins.iter().enumerate() {
            for (command, regex) in patterns.iter().enumerate() {
                routes.push(Route {
                    plugin,
                    // Manifests are far smaller than 2^32 commands.
                    command: command as u32,
                    regex: regex.clone(),
                });
            }
        }
        // The individual regexes were compiled anchored (`^(?:...)`), so
        // their source is exactly what the set must match.
        // Hundreds of patterns overflow the lazy DFA's default cache, and the
        // set then falls back to a much slower engine; give it room.
        let set = RegexSetBuilder::new(routes.iter().map(|r| r.regex.as_str()))
            .size_limit(size_limit)
            .dfa_size_limit(64 << 20)
            .build()?;
        Ok(Routes { set, routes })
    }

    /// Which routes match `text`, into a caller-owned buffer (one `bool` per
    /// route, in route order; allocated once and reused by each worker).
    pub fn matching_into(&self, text: &str, matched: &mut Vec<bool>) {
        matched.clear();
        matched.resize(self.routes.len(), false);
        self.set.matches_read_at(matched, text, 0);
    }

    /// Whether any route matches `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.set.is_match(text)
    }

    /// Fresh capture buffers, one per route (a worker keeps its own).
    pub fn capture_buffers(&self) -> Vec<CaptureLocations> {
        self.routes
            .iter()
            .map(|r| r.regex.capture_locations())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Property tests (the fuzz target for the command router): the
    //! one-pass `RegexSet` routing agrees with matching every pattern in
    //! turn, for arbitrary pattern sets and command texts.
    use super::*;
    use crate::library::compile_pattern;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    const FRAGMENTS: [&str; 10] = [
        "bacon",
        r"bacon$",
        r"bacon\s+(\S+)",
        "b",
        r"\d+",
        "(a|b)+c",
        "x?y",
        ".*",
        r"quote(?:\s+(\d+))?$",
        "é",
    ];

    fn compiled(patterns: &[&str]) -> Vec<Regex> {
        patterns
            .iter()
            .map(|p| compile_pattern(p).unwrap())
            .collect()
    }

    #[test]
    fn a_plugin_over_its_budget_is_caught_by_the_check() {
        assert!(check_budget(["^(?:bacon$)", r"^(?:bacon\s+(\S+))"]).is_ok());
        // About 4 MiB each, 12 MiB together (the huge-patterns fixture).
        let huge = [r"^(?:a\w{80})", r"^(?:b\w{80})", r"^(?:c\w{80})"];
        assert!(matches!(
            check_budget(huge),
            Err(regex::Error::CompiledTooBig(PLUGIN_BUDGET))
        ));
        assert!(check_budget(huge[..1].iter().copied()).is_ok());
        // A thousand patterns that each fit: refused without compiling them
        // one by one (the set's compiler stops at the budget).
        let many: Vec<String> = (0..1000).map(|i| format!(r"^(?:w{i} \w{{100}})")).collect();
        assert!(matches!(
            check_budget(many.iter().map(String::as_str)),
            Err(regex::Error::CompiledTooBig(PLUGIN_BUDGET))
        ));
    }

    #[test]
    fn a_table_that_does_not_build_leaves_out_the_last_plugins() {
        let small = compiled(&["bacon$"]);
        let wide = compiled(&[r"\w{20}"]);
        let plugins: Vec<&[Regex]> = vec![&small, &wide, &small];
        // A limit under what `wide` needs: only the first plugin fits.
        let (routes, admitted) = Routes::admit_within(&plugins, |_| 100 << 10);
        assert_eq!(admitted, 1);
        assert_eq!(routes.routes.len(), 1);
        let mut matched = Vec::new();
        routes.matching_into("bacon", &mut matched);
        assert_eq!(matched, [true]);
        // Nothing fits: an empty table, which matches nothing.
        let (routes, admitted) = Routes::admit_within(&plugins, |_| 0);
        assert_eq!((admitted, routes.routes.len()), (0, 0));
        routes.matching_into("bacon", &mut matched);
        assert!(matched.is_empty());
        // Everything fits with the real limits.
        assert_eq!(Routes::admit(&plugins).1, 3);
    }

    proptest! {
        // Deterministic unless `PROPTEST_RNG_SEED` is set: see line.rs's fuzz module.
        #![proptest_config(ProptestConfig {
            rng_seed: RngSeed::Fixed(0x9e37_79b9_7f4a_7c15),
            ..ProptestConfig::default()
        })]

        #[test]
        fn one_pass_routing_equals_a_loop_over_patterns(
            plugins in proptest::collection::vec(proptest::collection::vec(0..FRAGMENTS.len(), 0..5), 0..6),
            text in "[a-z0-9 é]{0,16}",
        ) {
            let compiled: Vec<Vec<Regex>> = plugins
                .iter()
                .map(|p| p.iter().map(|&i| compile_pattern(FRAGMENTS[i]).unwrap()).collect())
                .collect();
            let routes = Routes::new(compiled.iter().map(Vec::as_slice)).unwrap();
            let mut matched = Vec::new();
            routes.matching_into(&text, &mut matched);
            let fast: Vec<usize> = (0..matched.len()).filter(|&i| matched[i]).collect();
            let slow: Vec<usize> = routes
                .routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.regex.is_match(&text))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(fast, slow);
        }
    }
}
