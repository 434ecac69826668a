//! Commands the engine answers itself: `!help`, `!plugins`, and the admin
//! commands `!stats`, `!enable`, `!disable`.
//!
//! They take precedence over plugin patterns (a plugin cannot shadow
//! `!help`), and run on the workers like any command, so their replies keep
//! the conversation's order. Admins are the `<adapter>:<identity>` entries
//! of `EngineConfig::admins`.

use std::fmt::Write as _;
use std::time::Duration;

use super::health::PluginState;
use super::host::Inbound;
use super::switches::Scope;
use super::worker::Shared;

/// The built-in commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Help,
    Plugins,
    Stats,
    Enable,
    Disable,
}

/// Recognises a built-in by the first word of the command text.
pub(crate) fn parse(text: &str) -> Option<Builtin> {
    let word = text.split_whitespace().next()?;
    Some(match word {
        "help" => Builtin::Help,
        "plugins" => Builtin::Plugins,
        "stats" => Builtin::Stats,
        "enable" => Builtin::Enable,
        "disable" => Builtin::Disable,
        _ => return None,
    })
}

const USAGE: &str = "built-in: !help [plugin], !plugins; admins: !stats, !enable/!disable <plugin> [here|adapter|everywhere]";

pub(crate) fn run(shared: &Shared, builtin: Builtin, message: &Inbound, text: &str) -> String {
    let args: Vec<&str> = text.split_whitespace().skip(1).collect();
    let adapter = shared.adapter_names[message.adapter as usize].as_str();
    let room = message.room();
    let admin = shared
        .admins
        .iter()
        .any(|a| a.split_once(':') == Some((adapter, message.message.identity.as_str())));
    match builtin {
        Builtin::Help => help(shared, args.first().copied()),
        Builtin::Plugins => plugins(shared, adapter, room),
        _ if !admin => format!("`!{text}` is for admins only"),
        Builtin::Stats => stats(shared),
        Builtin::Enable | Builtin::Disable => {
            switch(shared, builtin == Builtin::Disable, &args, adapter, room)
        }
    }
}

fn help(shared: &Shared, plugin: Option<&str>) -> String {
    let Some(name) = plugin else {
        let mut out = String::from(USAGE);
        for p in shared.plugins.iter().filter(|p| !internal(&p.name)) {
            let usages: Vec<&str> = p.usages.iter().map(String::as_str).collect();
            let _ = write!(
                out,
                "\n{}: {} ({})",
                p.name,
                p.description,
                usages.join(", ")
            );
        }
        return out;
    };
    let Some(p) = shared
        .plugins
        .iter()
        .find(|p| p.name == name && !internal(name))
    else {
        return format!("no plugin named `{name}`; `!help` lists them");
    };
    let mut out = format!("{} {}: {}", p.name, p.version, p.description);
    if !p.help.is_empty() {
        let _ = write!(out, "\n{}", p.help);
    }
    for (command, usage) in p.commands.iter().zip(&p.usages) {
        let _ = write!(out, "\n  {usage}  ({command})");
    }
    out
}

fn plugins(shared: &Shared, adapter: &str, room: Option<&str>) -> String {
    if shared.plugins.is_empty() {
        return "no plugins loaded".to_owned();
    }
    let lines: Vec<String> = shared
        .plugins
        .iter()
        .filter(|p| !internal(&p.name))
        .map(|p| {
            let state = match (
                p.health.state(),
                shared.switches.disabled(&p.name, adapter, room),
            ) {
                (PluginState::Active, Some(scope)) => format!("disabled {scope}"),
                (state, _) => state.to_string(),
            };
            format!("{} {} {state}", p.name, p.version)
        })
        .collect();
    lines.join("\n")
}

fn human(d: Option<Duration>) -> String {
    match d {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_micros(1) => format!("{}ns", d.as_nanos()),
        Some(d) if d < Duration::from_millis(1) => format!("{:.1}µs", d.as_nanos() as f64 / 1e3),
        Some(d) if d < Duration::from_secs(1) => format!("{:.1}ms", d.as_micros() as f64 / 1e3),
        Some(d) => format!("{:.2}s", d.as_secs_f64()),
    }
}

/// The stats table (also printed by the binary's `--stats`).
pub fn stats_table(rows: &[super::PluginStatus]) -> String {
    let mut out =
        String::from("plugin        calls   errors  panics  timeouts  p50       p99       state");
    for p in rows {
        let c = &p.counters;
        let _ = write!(
            out,
            "\n{:<12} {:>6}  {:>7} {:>7} {:>9}  {:<9} {:<9} {}",
            p.name,
            c.calls,
            c.errors,
            c.panics,
            c.timeouts,
            human(c.p50),
            human(c.p99),
            p.state
        );
    }
    out
}

fn stats(shared: &Shared) -> String {
    let rows: Vec<_> = shared
        .statuses()
        .into_iter()
        .filter(|p| !internal(&p.name))
        .collect();
    stats_table(&rows)
}

/// Plugins named `__*` are the engine's users' plumbing (the test harness's
/// marker), not features: built-ins do not show them.
fn internal(name: &str) -> bool {
    name.starts_with("__")
}

fn switch(
    shared: &Shared,
    disable: bool,
    args: &[&str],
    adapter: &str,
    room: Option<&str>,
) -> String {
    let verb = if disable { "disable" } else { "enable" };
    let Some(&name) = args.first() else {
        return format!("usage: !{verb} <plugin> [here|adapter|everywhere]");
    };
    let Some(index) = shared.plugin_index(name) else {
        return format!("no plugin named `{name}`");
    };
    let scope = match args.get(1).copied().unwrap_or("here") {
        "here" => Scope::Room {
            adapter: adapter.to_owned(),
            room: room.map(str::to_owned),
        },
        "adapter" => Scope::Adapter(adapter.to_owned()),
        "everywhere" => Scope::Everywhere,
        other => return format!("unknown scope `{other}`; use here, adapter or everywhere"),
    };
    let shown = scope.to_string();
    if let Err(e) = shared.switches.set(name, scope, disable) {
        log::error!("cannot save the plugin switches: {e}");
        // The cause names a server path: it goes to the log, not the room.
        return format!(
            "`{name}` {verb}d {shown}, but the change could not be saved (the log says why)"
        );
    }
    log::info!("plugin `{name}` {verb}d {shown}");
    if disable {
        return format!("`{name}` disabled {shown}");
    }
    let health = &shared.plugins[index].health;
    if health.state() != PluginState::Active {
        health.set_state(PluginState::Active);
    }
    match shared.switches.disabled(name, adapter, room) {
        Some(still) => format!("`{name}` enabled {shown}, but it is still disabled {still}"),
        None => format!("`{name}` enabled {shown}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_recognised_by_their_first_word() {
        assert_eq!(parse("help"), Some(Builtin::Help));
        assert_eq!(parse("help bacon"), Some(Builtin::Help));
        assert_eq!(parse("disable bacon everywhere"), Some(Builtin::Disable));
        assert_eq!(parse("helpful"), None);
        assert_eq!(parse(""), None);
        assert_eq!(human(Some(Duration::from_nanos(2500))), "2.5µs");
    }
}
