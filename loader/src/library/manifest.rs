//! Validating a manifest: names, commands, patterns (compiled as the
//! router matches them) and the plugin's routing budget.

use plugboard_interface::adapter::AdapterManifest;
use plugboard_interface::plugin::PluginManifest;
use regex::Regex;

use super::one_line;
use crate::engine::routes;
use crate::error::LoadErrorKind;

/// Names are used on the command line and in chat (`discord !bacon`): one
/// word of letters, digits, `-` and `_`.
fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > 64 {
        return Err(format!("{what} name `{name}` is longer than 64 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} name `{}` contains {c:?} (allowed: ASCII letters, digits, `-`, `_`)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Compiles a command pattern the way the router matches it: anchored at
/// the start of the command text.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    // Within the budget: a pattern bigger than a whole plugin's share is
    // refused without compiling the rest of it.
    regex::RegexBuilder::new(&anchored(pattern))
        .size_limit(routes::PLUGIN_BUDGET)
        .build()
}

/// A pattern as the router matches it: anchored at the start of the text.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})")
}

pub(super) fn validate_plugin(manifest: &PluginManifest) -> Result<Vec<Regex>, String> {
    validate_name("plugin", &manifest.name)?;
    let mut seen = std::collections::HashSet::new();
    let mut patterns = Vec::with_capacity(manifest.commands.len());
    for (i, command) in manifest.commands.iter().enumerate() {
        let name = command.name.as_str();
        if name.is_empty() {
            return Err(format!("command #{i} has an empty name"));
        }
        if !seen.insert(name) {
            return Err(format!("command name `{name}` is declared twice"));
        }
        let regex = compile_pattern(&command.pattern).map_err(|e| {
            format!(
                "command `{name}`: invalid pattern `{}`: {}",
                command.pattern,
                regex_error_line(&e)
            )
        })?;
        patterns.push(regex);
    }
    Ok(patterns)
}

/// The plugin's share of the routing table (see `engine::routes`): its
/// patterns, which each compile, must also compile together within the
/// per-plugin budget, so that no plugin can stop the table from building.
///
/// Checked *before* the patterns are compiled one by one, from their text:
/// compiling is bounded by the budget only this way (the set's compiler
/// stops at the limit), whereas a thousand patterns that each fit would
/// take seconds and gigabytes one by one. A syntax error is left to
/// [`validate_plugin`], which names the command.
pub(super) fn check_routing_budget(manifest: &PluginManifest) -> Result<(), LoadErrorKind> {
    let anchored: Vec<String> = manifest
        .commands
        .iter()
        .map(|c| anchored(&c.pattern))
        .collect();
    match routes::check_budget(anchored.iter().map(String::as_str)) {
        Ok(()) => Ok(()),
        Err(regex::Error::CompiledTooBig(budget)) => Err(LoadErrorKind::RoutingBudget {
            name: manifest.name.to_string(),
            budget,
        }),
        Err(_) => Ok(()),
    }
}

pub(super) fn validate_adapter(manifest: &AdapterManifest) -> Result<(), String> {
    validate_name("adapter", &manifest.name)
}

/// regex's syntax errors are multi-line drawings; keep the `error:` line.
fn regex_error_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| one_line(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RVec;
    use plugboard_interface::plugin::CommandSpec;

    fn manifest(name: &str, commands: &[(&str, &str)]) -> PluginManifest {
        PluginManifest {
            name: name.into(),
            version: "1.0.0".into(),
            description: "".into(),
            help: "".into(),
            commands: commands
                .iter()
                .map(|(n, p)| CommandSpec {
                    name: (*n).into(),
                    pattern: (*p).into(),
                    usage: "".into(),
                })
                .collect::<RVec<_>>(),
        }
    }

    #[test]
    fn manifest_validation_names_the_problem() {
        assert!(validate_plugin(&manifest("bacon", &[("a", "bacon$")])).is_ok());
        let err = |m| validate_plugin(&m).unwrap_err();
        assert_eq!(err(manifest("", &[])), "plugin name is empty");
        assert!(err(manifest("two words", &[])).contains("contains ' '"));
        assert_eq!(
            err(manifest("p", &[("a", "x"), ("a", "y")])),
            "command name `a` is declared twice"
        );
        assert_eq!(
            err(manifest("p", &[("", "x")])),
            "command #0 has an empty name"
        );
        assert_eq!(
            err(manifest("p", &[("open", "bacon(")])),
            "command `open`: invalid pattern `bacon(`: unclosed group"
        );
    }

    #[test]
    fn patterns_are_anchored_at_the_start() {
        let re = compile_pattern(r"bacon$").unwrap();
        assert!(re.is_match("bacon"));
        assert!(!re.is_match("nobacon"));
    }
}
