//! Workers: run plugin commands and hand their replies to egress.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RSlice, RStr, RString};
use crossbeam_channel::{Receiver, Sender};
use plugboard_interface::message::{Egress, Invocation, Originator, RawMessage, Span};
use plugboard_interface::plugin::PluginBox;
use plugboard_interface::ExtError;
use regex::CaptureLocations;

use super::host::Inbound;
use super::router::Batch;
use super::routes::Routes;
use super::Unmatched;

/// A running plugin as the workers see it.
pub(crate) struct LivePlugin {
    pub name: String,
    pub commands: Vec<String>,
    pub obj: PluginBox,
}

/// What every worker shares, read-only.
pub(crate) struct Shared {
    pub plugins: Vec<LivePlugin>,
    pub routes: Routes,
    pub adapter_names: Vec<RString>,
    pub unmatched: Unmatched,
}

pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub execution: Receiver<Batch>,
    pub done: Sender<u64>,
    /// One egress channel per adapter, indexed like `Shared::adapter_names`.
    pub egress: Vec<Sender<Egress>>,
}

impl Worker {
    pub fn run(self) {
        // Per-worker scratch space, reused for every call: a command call
        // allocates nothing on the engine side but its reply.
        let mut captures = self.shared.routes.capture_buffers();
        let mut spans: Vec<Span> = Vec::new();
        for batch in &self.execution {
            for item in batch.items {
                self.process(item, &mut captures, &mut spans);
            }
            // After the replies: the router may now release this
            // conversation's next batch. It only fails if the router is gone,
            // which it never is while workers run.
            let _ = self.done.send(batch.key);
        }
    }

    fn process(&self, item: Inbound, captures: &mut [CaptureLocations], spans: &mut Vec<Span>) {
        let shared = &*self.shared;
        let Inbound { adapter, message } = item;
        // The sink only accepts commands, so the prefix is there.
        let text = message
            .content
            .strip_prefix(plugboard_interface::COMMAND_PREFIX)
            .unwrap_or(&message.content);
        let adapter_name = &shared.adapter_names[adapter as usize];
        let mut matched = false;
        for index in shared.routes.matching(text) {
            matched = true;
            let route = &shared.routes.routes[index];
            let plugin = &shared.plugins[route.plugin];
            let locs = &mut captures[index];
            spans.clear();
            if route.regex.captures_read(locs, text).is_some() {
                spans.extend((0..locs.len()).map(|g| match locs.get(g) {
                    // Command texts are far below 4 GiB: the sink's callers
                    // cap line length well before that.
                    Some((start, end)) => Span {
                        start: start as u32,
                        end: end as u32,
                    },
                    None => Span::NONE,
                }));
            }
            let invocation = Invocation {
                command: route.command,
                adapter: RStr::from_str(adapter_name),
                room: message.room.as_ref().map(|r| r.as_rstr()),
                identity: message.identity.as_rstr(),
                text: RStr::from_str(text),
                captures: RSlice::from_slice(spans),
            };
            let command = &plugin.commands[route.command as usize];
            let reply = match plugin.obj.call(&invocation).into_result() {
                Ok(ROption::RSome(text)) => text,
                Ok(ROption::RNone) => continue,
                Err(err) => error_reply(&plugin.name, command, &message, err),
            };
            self.reply(adapter, &message, reply);
        }
        if !matched {
            log::debug!(target: "plugboard::router", "{adapter_name}: no command matches `{text}`");
            if shared.unmatched == Unmatched::Reply {
                self.reply(
                    adapter,
                    &message,
                    format!("no command matches `!{text}`").into(),
                );
            }
        }
    }

    fn reply(&self, adapter: u32, message: &RawMessage, text: RString) {
        let egress = Egress {
            originator: Originator {
                adapter: self.shared.adapter_names[adapter as usize].clone(),
                room: message.room.clone(),
                identity: message.identity.clone(),
            },
            text,
        };
        if self.egress[adapter as usize].send(egress).is_err() {
            // Egress threads outlive the workers by construction; this is a bug.
            log::error!("egress for adapter #{adapter} is gone; reply dropped");
        }
    }
}

/// The user sees a short reply; the log gets the detail.
fn error_reply(plugin: &str, command: &str, message: &RawMessage, err: ExtError) -> RString {
    match &err {
        ExtError::Panicked(msg) => {
            log::error!(
                "plugin `{plugin}` panicked in command `{command}` (from {}): {msg}",
                message.identity
            );
            format!("sorry, `{plugin}` hit an internal error").into()
        }
        other => {
            log::warn!(
                "plugin `{plugin}` command `{command}` failed (from {}): {other}",
                message.identity
            );
            format!("`{plugin}` failed: {}", other.message()).into()
        }
    }
}
