//! The quote book, tested through the plugin author's harness.

use plugboard_harness::TestBot;
use plugboard_quote::Quote;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("plugboard-quote-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn quotes_are_added_numbered_and_kept_per_room() {
    let mut bot = TestBot::builder().plugin::<Quote>().start().unwrap();
    let general = Some("#general");
    assert_eq!(
        bot.send("ann", general, "!quote"),
        ["no quotes here yet; add one with `!quote add <text>`"]
    );
    assert_eq!(
        bot.send("ann", general, "!quote add to be or not to be"),
        ["quote #1 added"]
    );
    assert_eq!(
        bot.send("bob", general, "!quote add  veni vidi vici "),
        ["quote #2 added"]
    );
    assert_eq!(bot.send("bob", general, "!quote 2"), ["#2: veni vidi vici"]);
    assert_eq!(
        bot.send("bob", general, "!quote 3"),
        ["no quote #3 here (2 in this room)"]
    );
    let random = bot.send("cat", general, "!quote");
    assert!(
        random == ["#1: to be or not to be"] || random == ["#2: veni vidi vici"],
        "{random:?}"
    );
    // Another room has its own book.
    assert_eq!(
        bot.send("ann", Some("#random"), "!quote 1"),
        ["no quote #1 here (0 in this room)"]
    );
}

#[test]
fn quotes_survive_a_restart_through_the_data_dir() {
    let data = TempDir::new("restart");
    let mut bot = TestBot::builder()
        .plugin::<Quote>()
        .data_dir(&data.0)
        .start()
        .unwrap();
    assert_eq!(
        bot.send("ann", Some("#rust"), "!quote add fearless concurrency"),
        ["quote #1 added"]
    );
    let mut bot = bot.restart().unwrap();
    assert_eq!(
        bot.send("bob", Some("#rust"), "!quote 1"),
        ["#1: fearless concurrency"]
    );
    assert!(data.0.join("plugins/quote/quotes.json").exists());
}

#[test]
fn the_config_limits_the_book_and_a_bad_config_is_refused() {
    let mut bot = TestBot::builder()
        .plugin::<Quote>()
        .config("quote", r#"{"max_quotes": 1, "max_length": 10}"#)
        .start()
        .unwrap();
    assert_eq!(bot.say("ann", "!quote add short"), ["quote #1 added"]);
    assert_eq!(
        bot.say("ann", "!quote add again"),
        ["`quote` failed: this room's book is full (1 quotes)"]
    );
    assert_eq!(
        bot.say("ann", "!quote add far too long for it"),
        ["`quote` failed: quotes are at most 10 characters"]
    );

    let err = TestBot::builder()
        .plugin::<Quote>()
        .config("quote", r#"{"max_quotes": 0}"#)
        .start()
        .err()
        .unwrap();
    assert!(
        err.ends_with("rejected its configuration: max_quotes and max_length must be at least 1"),
        "{err}"
    );
    let err = TestBot::builder()
        .plugin::<Quote>()
        .config("quote", r#"{"max_quotez": 5}"#)
        .start()
        .err()
        .unwrap();
    assert!(err.contains("unknown field `max_quotez`"), "{err}");
}

#[test]
fn help_lists_the_commands_and_admins_can_disable_the_plugin_here() {
    let data = TempDir::new("switch");
    let mut bot = TestBot::builder()
        .plugin::<Quote>()
        .data_dir(&data.0)
        .admin("root")
        .start()
        .unwrap();
    let help = bot.say("ann", "!help quote").join("\n");
    assert!(
        help.contains("!quote add <text>") && help.contains("!quote <n>"),
        "{help}"
    );
    assert_eq!(
        bot.send("ann", Some("#a"), "!disable quote"),
        ["`!disable quote` is for admins only"]
    );
    assert_eq!(
        bot.send("root", Some("#a"), "!disable quote"),
        ["`quote` disabled in test/#a"]
    );
    assert_eq!(
        bot.send("ann", Some("#a"), "!quote"),
        ["`quote` is disabled in test/#a"]
    );
    assert_eq!(
        bot.send("ann", Some("#b"), "!quote 1"),
        ["no quote #1 here (0 in this room)"]
    );
    // The switch persists across a restart.
    let mut bot = bot.restart().unwrap();
    assert_eq!(
        bot.send("ann", Some("#a"), "!quote"),
        ["`quote` is disabled in test/#a"]
    );
    assert_eq!(
        bot.send("root", Some("#a"), "!enable quote"),
        ["`quote` enabled in test/#a"]
    );
    assert_eq!(
        bot.send("ann", Some("#a"), "!quote 1"),
        ["no quote #1 here (0 in this room)"]
    );
}
