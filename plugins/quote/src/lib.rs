//! `quote`: a quote book, one per room, kept across restarts.
//!
//! - `!quote add <text>`: adds a quote; answers its number.
//! - `!quote <n>`: quote number `n`.
//! - `!quote`: a random quote.
//!
//! Configuration (`[plugins.quote]`): `max_quotes` per room (default 1000),
//! `max_length` of a quote in characters (default 500). Quotes live in the
//! data directory the engine gives the plugin (`quotes.json`, rewritten
//! atomically); without one, they last until the engine stops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use plugboard_interface::prelude::*;
use plugboard_interface::serde::{Deserialize, Serialize};
use plugboard_interface::{log, serde_json};

#[derive(Deserialize)]
#[serde(crate = "plugboard_interface::serde", default, deny_unknown_fields)]
struct Config {
    max_quotes: usize,
    max_length: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_quotes: 1000,
            max_length: 500,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(crate = "plugboard_interface::serde")]
struct Book {
    /// Quotes by room key (`<adapter>` or `<adapter>/<room>`).
    rooms: BTreeMap<String, Vec<String>>,
}

/// The quote book plugin.
pub struct Quote {
    config: Config,
    file: Option<PathBuf>,
    book: Mutex<Book>,
    /// xorshift state for `!quote` (no need for a crypto RNG to pick a quote).
    rng: Mutex<u64>,
}

impl Plugin for Quote {
    fn manifest() -> Manifest<Self> {
        Manifest::new("quote", env!("CARGO_PKG_VERSION"))
            .description("a quote book per room")
            .help("Quotes are kept per room and survive restarts.")
            .command(
                "add",
                r"quote\s+add\s+(.+)$",
                "!quote add <text>",
                Quote::add,
            )
            .command("get", r"quote\s+(\d+)$", "!quote <n>", Quote::get)
            .command("random", r"quote$", "!quote", Quote::random)
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        let config: Config = ctx.config()?;
        if config.max_quotes == 0 || config.max_length == 0 {
            return Err(Error::config(
                "max_quotes and max_length must be at least 1",
            ));
        }
        let file = ctx.data_dir().map(|d| d.join("quotes.json"));
        let book = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text)
                    .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?
            }
            _ => Book::default(),
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1);
        Ok(Quote {
            config,
            file,
            book: Mutex::new(book),
            rng: Mutex::new(seed),
        })
    }
}

fn room_key(call: &Call<'_>) -> String {
    match call.room() {
        Some(room) => format!("{}/{room}", call.adapter()),
        None => call.adapter().to_owned(),
    }
}

impl Quote {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic while holding the lock (none is expected) leaves the book
        // as it was before the failed command: keep serving it.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, book: &Book) -> Result<(), Error> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(book)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn add(&self, call: &Call<'_>) -> Result<Reply, Error> {
        let text = call.capture(1).unwrap_or("").trim();
        if text.chars().count() > self.config.max_length {
            return Err(Error::msg(format!(
                "quotes are at most {} characters",
                self.config.max_length
            )));
        }
        let mut book = self.book();
        let quotes = book.rooms.entry(room_key(call)).or_default();
        if quotes.len() >= self.config.max_quotes {
            return Err(Error::msg(format!(
                "this room's book is full ({} quotes)",
                self.config.max_quotes
            )));
        }
        quotes.push(text.to_owned());
        let n = quotes.len();
        self.save(&book)?;
        log::info!("quote #{n} added in {}", room_key(call));
        Ok(format!("quote #{n} added").into())
    }

    fn get(&self, call: &Call<'_>) -> Result<Reply, Error> {
        let n: usize = call.capture(1).unwrap_or("0").parse()?;
        let book = self.book();
        let quotes = book
            .rooms
            .get(&room_key(call))
            .map_or(&[][..], Vec::as_slice);
        match n.checked_sub(1).and_then(|i| quotes.get(i)) {
            Some(q) => Ok(format!("#{n}: {q}").into()),
            None => Ok(format!("no quote #{n} here ({} in this room)", quotes.len()).into()),
        }
    }

    fn random(&self, call: &Call<'_>) -> Result<Reply, Error> {
        let book = self.book();
        let quotes = book
            .rooms
            .get(&room_key(call))
            .map_or(&[][..], Vec::as_slice);
        if quotes.is_empty() {
            return Ok("no quotes here yet; add one with `!quote add <text>`".into());
        }
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let i = (*x % quotes.len() as u64) as usize;
        Ok(format!("#{}: {}", i + 1, quotes[i]).into())
    }
}

export_plugin!(Quote);
