//! `bacon`: the classic plugboard example plugin.
//!
//! - `!bacon` -> "gives <sender> a strip of delicious bacon."
//! - `!bacon <nick>` -> "gives <nick> a strip of delicious bacon as a gift from <sender>"
//!
//! It is built as a `cdylib` (dropped on the load path) and as an `rlib`
//! (so a bot can also link it in-process).

use plugboard_interface::prelude::*;

/// The bacon plugin. Stateless.
pub struct Bacon;

impl Plugin for Bacon {
    fn manifest() -> Manifest<Self> {
        Manifest::new("bacon", env!("CARGO_PKG_VERSION"))
            .description("hands out strips of delicious bacon")
            .help("`!bacon` gives you a strip of bacon; `!bacon <nick>` gives one to <nick> as a gift from you.")
            .command("bacon", r"bacon$", "!bacon", Bacon::for_sender)
            .command("gift", r"bacon\s+(\S+)", "!bacon <nick>", Bacon::gift)
    }

    fn init(_ctx: &Context) -> Result<Self, Error> {
        Ok(Bacon)
    }
}

impl Bacon {
    fn for_sender(&self, call: &Call<'_>) -> Result<Reply, Error> {
        Ok(format!("gives {} a strip of delicious bacon.", call.sender()).into())
    }

    fn gift(&self, call: &Call<'_>) -> Result<Reply, Error> {
        // The pattern has exactly one group, which always participates.
        let nick = call.capture(1).ok_or_else(|| Error::msg("missing nick"))?;
        Ok(format!(
            "gives {nick} a strip of delicious bacon as a gift from {}",
            call.sender()
        )
        .into())
    }
}

export_plugin!(Bacon);
