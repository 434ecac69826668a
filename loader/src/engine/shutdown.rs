//! How the engine stops: by disconnection, stage by stage.
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
//!    ingress `Sender`; a late `push` gets `Closed`.
//! 3. **Router drains.** It sees the ingress channel disconnected once it is
//!    empty, keeps dispatching until every conversation's backlog has run,
//!    then drops the execution `Sender`.
//! 4. **Workers drain.** Each finishes the batches left in the execution
//!    channel, sends their replies, and exits, dropping its egress `Sender`s.
//! 5. **Egress drains.** Each adapter's egress thread delivers every reply
//!    left in its channel and exits.
//! 6. **Join and drop.** The engine joins every thread, then drops the
//!    adapters (closing their connections) and the plugins.
//!
//! Every accepted command therefore gets its reply delivered, and every
//! thread is joined. The one exception is an adapter whose `listen` ignores
//! `stop`: after the grace period its thread is left behind (a thread cannot
//! be killed in-process) with its gate closed, and a warning is logged.
