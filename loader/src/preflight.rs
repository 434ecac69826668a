//! Pre-flight: every library is opened first in a short-lived child process.
//!
//! Why: `dlopen` runs a library's static initialisers (`.init_array`)
//! before the loader can check anything, and a truncated file can fault
//! inside the dynamic linker itself. Such a library can kill the process
//! (SIGSEGV, SIGBUS), end it (`exit(0)` in a constructor) or hang it, and
//! nothing in-process can stop that: only another process can. So the
//! engine's own executable, started in a hidden mode ([`run_if_child`]),
//! opens and validates the libraries first ([`library::open_with`]: trust
//! checks, snapshot, linker, header, layout, manifest) and streams one
//! verdict per library back. The parent opens in-process only what passed.
//!
//! # Protocol
//!
//! The parent writes the job (trust policy and paths) as JSON to the
//! child's stdin and closes it. The child answers on its original stdout,
//! one JSON line per library, in order: `{"i":0}` when it opened, or
//! `{"i":0,"cause":"...","detail":"..."}` with the one-line
//! [`LoadErrorKind`] text and, where there is one, its long form (the
//! parent logs it at debug level, as for a library it opened itself). Before loading
//! anything, the child moves its stdout to a private descriptor and points
//! descriptor 1 at stderr, so that a library printing to stdout cannot mix
//! with the verdicts; stderr is drained by the parent into its debug log.
//!
//! The parent blames the library whose verdict is due when the child dies
//! (`killed by SIGBUS while loading`, `exited with status 0 while
//! loading`) or sends nothing for the load deadline (the child is
//! killed); it then starts a new child for the libraries after it. Verdicts
//! are used as they arrive, so the parent's in-process loading overlaps
//! the child's.
//!
//! # What it does not protect against
//!
//! A library that passes the pre-flight runs its initialisers again in the
//! engine: one that misbehaves only the second time, or only in the engine
//! (it can tell), is not caught. The pre-flight is about faults, not malice;
//! the trust checks decide what may be opened at all (in both processes).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError};

use crate::engine::human;
use crate::error::{LoadError, LoadErrorKind};
use crate::library::{self, Candidate, Mapping, Prepared};
use crate::trust::{self, TrustPolicy};

/// The first argument that starts an executable as a pre-flight child.
pub const CHILD_ARG: &str = "__plugboard-preflight";

/// How to run the pre-flight: which executable to start as the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    exe: PathBuf,
}

/// How much longer than the load deadline the parent waits for a verdict:
/// a `manifest()` that hangs is then reported by the child itself, precisely,
/// and only a hang inside `dlopen` (constructors) is left to the parent.
const MARGIN: Duration = Duration::from_millis(250);

impl Preflight {
    /// A pre-flight that starts `exe` as its child. `exe` must call
    /// [`run_if_child`] first thing in `main`.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Preflight { exe: exe.into() }
    }

    /// A pre-flight that starts this very executable (the usual choice:
    /// the binary's `main` calls [`run_if_child`]).
    pub fn current_exe() -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }
}

/// Why the pre-flight child refused or could not judge a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightFailure {
    /// The child opened it and refused it; the cause is the child's line.
    Refused(String),
    /// The same, with the long form of the cause (logged at debug level).
    RefusedWithDetail {
        /// The one-line cause.
        cause: String,
        /// The long form.
        detail: String,
    },
    /// The child died while loading it.
    Died(String),
    /// The child gave no verdict within the deadline and was killed.
    Hung(Duration),
    /// The child answered something that is not a verdict.
    Garbled(String),
}

impl fmt::Display for PreflightFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightFailure::Refused(cause)
            | PreflightFailure::RefusedWithDetail { cause, .. } => f.write_str(cause),
            PreflightFailure::Died(how) => write!(f, "{how} while loading"),
            PreflightFailure::Hung(d) => write!(
                f,
                "did not finish loading within {} (its initialisers or manifest() hang)",
                human(*d)
            ),
            PreflightFailure::Garbled(line) => write!(
                f,
                "the pre-flight child answered garbage while loading it: {line:?}"
            ),
        }
    }
}

/// If this process was started as a pre-flight child (first argument
/// [`CHILD_ARG`]), runs the child and exits; otherwise returns at once.
///
/// Call it first thing in `main`, before any thread is started.
pub fn run_if_child() {
    if std::env::args_os().nth(1).as_deref() != Some(CHILD_ARG.as_ref()) {
        return;
    }
    let code = match child_main() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("plugboard pre-flight child: {e}");
            3
        }
    };
    // `_exit`, not `exit`: the loaded libraries' destructors and atexit
    // handlers are as untrusted as their constructors, and everything has
    // been written already.
    // SAFETY: `_exit` has no preconditions; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// One verdict of the child: no cause means the library opened.
#[derive(serde::Serialize, serde::Deserialize)]
struct Verdict {
    i: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    allow_writable: bool,
    /// `None`: no allowlist. Otherwise hex digests, one per line.
    allowlist: Option<String>,
    /// How long `manifest()` may take, in milliseconds.
    load_deadline_ms: u64,
    paths: Vec<PathBuf>,
}

fn child_main() -> io::Result<()> {
    // If the engine dies, so does its pre-flight child. The engine's pid is
    // our second argument: if it is gone already (before the `prctl`), we
    // have been re-parented and stop here.
    // SAFETY: PR_SET_PDEATHSIG with a signal number has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let parent = std::env::args().nth(2).and_then(|p| p.parse::<i32>().ok());
    // SAFETY: getppid has no preconditions.
    if parent != Some(unsafe { libc::getppid() }) {
        return Err(io::Error::other(
            "the engine that started this child is gone",
        ));
    }
    // Ctrl-C in a terminal reaches the whole process group; the parent
    // decides when the child ends, and must not blame a library for it.
    // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let verdicts = reserve_stdout()?;
    let mut verdicts = io::BufWriter::new(verdicts);
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input)?;
    let job: Job = serde_json::from_slice(&input).map_err(io::Error::other)?;
    let policy = TrustPolicy {
        allow_writable: job.allow_writable,
        allowlist: match &job.allowlist {
            Some(text) => Some(trust::parse_allowlist(text).map_err(io::Error::other)?),
            None => None,
        },
    };
    let deadline = Duration::from_millis(job.load_deadline_ms);
    for (i, path) in job.paths.iter().enumerate() {
        let verdict = match library::prepare_as(path, &policy, Mapping::InPlace)
            .and_then(|p| p.open(deadline))
        {
            Ok(_) => Verdict {
                i,
                cause: None,
                detail: None,
            },
            Err(e) => Verdict {
                i,
                // JSON carries any text; the cause is one line by design,
                // and the parent escapes what it prints.
                cause: Some(e.kind.to_string()),
                detail: e.detail().map(str::to_owned),
            },
        };
        serde_json::to_writer(&mut verdicts, &verdict).map_err(io::Error::other)?;
        writeln!(verdicts)?;
        verdicts.flush()?;
    }
    Ok(())
}

/// Moves stdout to a new close-on-exec descriptor, points descriptor 1 at
/// stderr, and returns the real stdout. Call it before any library is
/// loaded and before any other thread starts; write program output (the
/// child's verdicts, the REPL's replies and reports) to the returned file
/// only, so that nothing a library prints can mix with it.
pub fn reserve_stdout() -> io::Result<std::fs::File> {
    use std::os::unix::io::FromRawFd;
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` and `dup2` only act on descriptors 1
    // and 2 and a new one; failures are checked.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::dup2(2, 1) } < 0 {
        let err = io::Error::last_os_error();
        // SAFETY: `fd` was just created and is owned by nothing else.
        unsafe { libc::close(fd) };
        return Err(err);
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Opens each of `paths` with [`library::open_within`], after a pre-flight
/// in a child process when `preflight` is given, and hands each outcome to
/// `each`, in order. `load_deadline` bounds each library's `manifest()`
/// (in both processes) and, in the child, its whole load. Never fails as a
/// whole: a child that cannot be started is logged and the libraries are
/// opened in-process.
pub fn open_all(
    paths: &[PathBuf],
    policy: &TrustPolicy,
    preflight: Option<&Preflight>,
    load_deadline: Duration,
    mut each: impl FnMut(&Path, Result<Candidate, LoadError>),
) {
    std::thread::scope(|scope| {
        // Checks and snapshots (no library code runs) are made on a helper
        // thread, ahead of the in-process opening and of the child's
        // verdicts: on two cores, the three overlap.
        let (ahead, prepared) = bounded(PREPARE_AHEAD);
        let spawned = thread::Builder::new()
            .name("preflight-prepare".into())
            .spawn_scoped(scope, move || {
                for path in paths {
                    if ahead.send(library::prepare(path, policy)).is_err() {
                        break;
                    }
                }
            });
        let late;
        let prepared = match spawned {
            Ok(_) => prepared,
            Err(e) => {
                log::warn!("cannot start the preparing thread: {e}; preparing in turn");
                let (ahead, rx) = bounded(paths.len().max(1));
                for path in paths {
                    let _ = ahead.send(library::prepare(path, policy));
                }
                late = rx;
                late
            }
        };
        match preflight {
            Some(preflight) => run_children(
                paths,
                preflight,
                policy,
                load_deadline,
                &prepared,
                &mut each,
            ),
            None => {
                for path in paths {
                    let outcome =
                        next_prepared(&prepared).and_then(|p| open(path, p, load_deadline));
                    each(path, outcome);
                }
            }
        }
    })
}

fn next_prepared(prepared: &Receiver<Result<Prepared, LoadError>>) -> Result<Prepared, LoadError> {
    prepared
        .recv()
        .expect("invariant: the preparing side sends one result per path, in order")
}

fn open(path: &Path, prepared: Prepared, load_deadline: Duration) -> Result<Candidate, LoadError> {
    log::info!("loading {}", path.display());
    prepared.open(load_deadline)
}

/// How many prepared libraries (their snapshots) may wait for a verdict.
const PREPARE_AHEAD: usize = 8;

/// The verdict loop: one child after another until every library has one.
fn run_children(
    paths: &[PathBuf],
    preflight: &Preflight,
    policy: &TrustPolicy,
    load_deadline: Duration,
    prepared: &Receiver<Result<Prepared, LoadError>>,
    each: &mut impl FnMut(&Path, Result<Candidate, LoadError>),
) {
    let mut next = 0;
    while next < paths.len() {
        let rest = &paths[next..];
        let mut child = match Running::spawn(preflight, rest, policy, load_deadline) {
            Ok(child) => child,
            Err(e) => {
                log::warn!(
                    "cannot start the pre-flight child {}: {e}; opening the remaining libraries in-process",
                    preflight.exe.display()
                );
                for path in rest {
                    each(
                        path,
                        next_prepared(prepared).and_then(|p| open(path, p, load_deadline)),
                    );
                }
                return;
            }
        };
        for (i, path) in rest.iter().enumerate() {
            log::debug!("pre-flight: {}", path.display());
            let verdict = child.verdict(i, load_deadline);
            next += 1;
            let stop = matches!(
                verdict,
                Err(PreflightFailure::Died(_)
                    | PreflightFailure::Hung(_)
                    | PreflightFailure::Garbled(_))
            );
            if stop {
                child.log_stderr(path);
            }
            // A failure of our own checks comes first: it is the engine's
            // verdict, and the child found the same (it made the same checks).
            let outcome = match (next_prepared(prepared), verdict) {
                (Err(e), _) => Err(e),
                (Ok(prepared), Ok(())) => open(path, prepared, load_deadline),
                (Ok(_), Err(failure)) => {
                    Err(LoadError::at(path, LoadErrorKind::Preflight(failure)))
                }
            };
            each(path, outcome);
            if stop {
                // This child is gone (or killed): a new one takes the rest.
                break;
            }
        }
        child.finish();
    }
}

/// A running pre-flight child.
struct Running {
    child: Child,
    verdicts: Receiver<(Instant, String)>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    last: Instant,
}

/// How much of the child's stderr is kept for the debug log.
const STDERR_KEPT: usize = 4096;

impl Running {
    fn spawn(
        preflight: &Preflight,
        paths: &[PathBuf],
        policy: &TrustPolicy,
        load_deadline: Duration,
    ) -> io::Result<Self> {
        let job = Job {
            allow_writable: policy.allow_writable,
            allowlist: policy
                .allowlist
                .as_ref()
                .map(|set| set.iter().map(trust::hex).collect::<Vec<_>>().join("\n")),
            load_deadline_ms: u64::try_from(load_deadline.as_millis()).unwrap_or(u64::MAX),
            // Absolute, so that the child's view cannot differ from ours.
            paths: paths
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect(),
        };
        let mut command = Command::new(&preflight.exe);
        command
            .arg(CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The child arranges to die with us itself (see `child_main`): a
        // `pre_exec` hook would force a full `fork` instead of `posix_spawn`,
        // which costs milliseconds at every start.
        command.arg(std::process::id().to_string());
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (Some(mut stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            unreachable!("all three were set to piped");
        };
        let started = Instant::now();
        // A job too large for the pipe must not block us while the child is
        // still starting: write it from a thread.
        let job = serde_json::to_vec(&job).map_err(io::Error::other)?;
        thread::Builder::new()
            .name("preflight-job".into())
            .spawn(move || {
                // A child that died early makes this fail; `verdict` reports it.
                let _ = stdin.write_all(&job);
            })?;
        let (tx, verdicts) = unbounded();
        thread::Builder::new()
            .name("preflight-verdicts".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            })?;
        // Drained so that a chatty library cannot fill the pipe and stall
        // the child; the tail is kept for the debug log.
        let stderr = thread::Builder::new()
            .name("preflight-stderr".into())
            .spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                let mut stderr = stderr;
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEPT {
                        kept.drain(..kept.len() - STDERR_KEPT);
                    }
                }
                kept
            })?;
        Ok(Running {
            child,
            verdicts,
            stderr: Some(stderr),
            last: started,
        })
    }

    /// Waits for the verdict on library `i` of this child's job.
    fn verdict(&mut self, i: usize, deadline: Duration) -> Result<(), PreflightFailure> {
        // Measured from the previous verdict's arrival, not from now: the
        // time the caller spent loading in-process is not the child's.
        let due = self.last + deadline + MARGIN;
        let (at, line) = match self
            .verdicts
            .recv_timeout(due.saturating_duration_since(Instant::now()))
        {
            Ok(verdict) => verdict,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                return Err(PreflightFailure::Hung(deadline));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PreflightFailure::Died(describe_exit(self.wait())));
            }
        };
        self.last = at;
        match serde_json::from_str::<Verdict>(&line) {
            Ok(Verdict {
                i: n, cause: None, ..
            }) if n == i => Ok(()),
            Ok(Verdict {
                i: n,
                cause: Some(cause),
                detail,
            }) if n == i => Err(match detail {
                Some(detail) => PreflightFailure::RefusedWithDetail { cause, detail },
                None => PreflightFailure::Refused(cause),
            }),
            _ => {
                self.kill();
                Err(PreflightFailure::Garbled(line.chars().take(200).collect()))
            }
        }
    }

    fn kill(&mut self) {
        // Fails only if it has already exited, which is what we want anyway.
        let _ = self.child.kill();
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    fn log_stderr(&mut self, path: &Path) {
        self.kill();
        let _ = self.wait();
        if let Some(kept) = self.stderr.take().and_then(|t| t.join().ok()) {
            let text = String::from_utf8_lossy(&kept);
            let text = text.trim();
            if !text.is_empty() {
                log::debug!(
                    "{}: the pre-flight child's last output:\n{text}",
                    path.display()
                );
            }
        }
    }

    /// Reaps the child; it has given every verdict (or was killed).
    fn finish(mut self) {
        self.kill();
        let _ = self.wait();
        if let Some(thread) = self.stderr.take() {
            let _ = thread.join();
        }
    }
}

fn describe_exit(status: io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by {}", signal_name(signal)),
            (None, None) => format!("ended ({status})"),
        },
        Err(e) => format!("ended (cannot tell how: {e})"),
    }
}

/// `SIGSEGV` for 11, and so on; the number for the rest.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_one_line() {
        assert_eq!(
            PreflightFailure::Died("killed by SIGBUS".into()).to_string(),
            "killed by SIGBUS while loading"
        );
        assert!(PreflightFailure::Hung(Duration::from_secs(5))
            .to_string()
            .starts_with("did not finish loading within 5 s"));
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(63), "signal 63");
    }
}
