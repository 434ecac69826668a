//! How the engine stops: by disconnection, stage by stage, within one
//! bound.
//!
//! No stage is told to stop; each one stops when its input channel is
//! disconnected *and* drained, then drops its own senders, which disconnects
//! the next stage. [`Engine::shutdown`](super::Engine::shutdown) only has to
//! start the cascade and join:
//!
//! 1. **Stop listening.** Call every adapter's `stop`, then wait (up to
//!    `EngineConfig::listen_grace`) for each `listen` to return. Messages an
//!    adapter pushes before returning are accepted as usual.
//! 2. **Close intake.** Close every gate (`engine/host.rs`; each
//!    adapter's sink, and the embedder's handles). This drops the last
//!    ingress `Sender`; a late `push` gets `Closed`, and so does a `push`
//!    that was waiting for room (the router may be unable to make any: its
//!    backlog full behind a hung command).
//! 3. **Router drains.** It sees the ingress channel disconnected once it is
//!    empty, keeps dispatching until every conversation's backlog has run,
//!    then drops the execution `Sender`.
//! 4. **Workers drain.** Each finishes the batches left in the execution
//!    channel (and the continuations of commands that waited for a plugin's
//!    call slot: a waiting batch is still in flight for the router), sends
//!    their replies, and exits, dropping its egress `Sender`s.
//! 5. **Egress drains.** Each adapter's egress thread delivers every reply
//!    left in its channel and exits.
//! 6. **Join and drop.** The engine joins every thread, then drops the
//!    plugins and adapters, each on a thread of its own, so that a
//!    destructor that never returns cannot hold the process: it is
//!    abandoned with `plugin `x` did not finish dropping within ...`. A
//!    plugin with a thread still stuck in one of its calls is never
//!    dropped (it is in use).
//!
//! **Shutdown never depends on an extension cooperating: every wait ends
//! `EngineConfig::shutdown_grace` after `shutdown` began** (the wait for
//! `listen` ends sooner, at `listen_grace`, if that is shorter). Every
//! accepted command therefore gets its reply delivered and every thread is
//! joined, unless something is stuck: a `listen` that ignores `stop`, a
//! `send` or a plugin call that never returns, a `Drop` that never returns.
//! Threads cannot be killed in-process; what is stuck when the grace ends is
//! left behind, with a log line.
