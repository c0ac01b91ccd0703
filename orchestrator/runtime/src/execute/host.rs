//! The runtime's side of a compute's [`AssetContext`]: [`RuntimeHost`] implements the core's
//! [`StepHost`] for one attempt of one step. Log lines go to the event sink stamped now,
//! materializations and checks to the step's recorder, cancellation is the run's token, and
//! child processes run in their own process group, which cancellation kills.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::asset::{AssetKey, BoxFuture};
use crate::context::{CheckResult, ComputeError, Materialization, StdoutFilter, StepHost};
use crate::event::{LogLevel, LogLine, LogStream};
use crate::run::RunId;

use super::sink::EventSink;
use super::step::StepRecorder;

/// How long a child process gets between SIGTERM and SIGKILL when its run is canceled.
const CHILD_GRACE: Duration = Duration::from_secs(5);

/// One attempt's host: where its logs, reports and child processes go.
pub(crate) struct RuntimeHost {
    pub run_id: RunId,
    pub step_key: Arc<str>,
    pub sink: EventSink,
    pub cancel: CancellationToken,
    pub recorder: Arc<StepRecorder>,
    /// Child-process stdout lines that start with `orch:`, for computes that read them back.
    pub captured: Arc<Mutex<Vec<String>>>,
}

impl RuntimeHost {
    fn logger(&self) -> LineWriter {
        LineWriter {
            run_id: self.run_id,
            step_key: self.step_key.clone(),
            sink: self.sink.clone(),
        }
    }
}

/// Stores log lines of one step, stamped when they are written.
#[derive(Clone)]
struct LineWriter {
    run_id: RunId,
    step_key: Arc<str>,
    sink: EventSink,
}

impl LineWriter {
    fn line(&self, stream: LogStream, level: LogLevel, message: String) {
        tracing::debug!(step = %self.step_key, stream = stream.as_str(), "{message}");
        self.sink.log(LogLine {
            run_id: self.run_id,
            step_key: self.step_key.to_string(),
            stream,
            level,
            timestamp: Utc::now(),
            message,
        });
    }
}

impl StepHost for RuntimeHost {
    fn log(&self, stream: LogStream, level: LogLevel, message: String) {
        self.logger().line(stream, level, message);
    }

    fn report_materialization(&self, asset_key: AssetKey, materialization: Materialization) {
        self.recorder.materialized(asset_key, materialization);
    }

    fn report_check(&self, result: CheckResult) {
        self.recorder.check(result);
    }

    fn is_canceled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn canceled(&self) -> BoxFuture<()> {
        let cancel = self.cancel.clone();
        Box::pin(async move { cancel.cancelled().await })
    }

    fn run_command(
        &self,
        command: std::process::Command,
        on_stdout: StdoutFilter,
    ) -> BoxFuture<Result<ExitStatus, ComputeError>> {
        let log = self.logger();
        let captured = self.captured.clone();
        let cancel = self.cancel.clone();
        Box::pin(run_command(command, on_stdout, log, captured, cancel))
    }

    fn captured_stdout(&self) -> Vec<String> {
        self.captured.lock().expect("captured lock").clone()
    }
}

async fn run_command(
    command: std::process::Command,
    mut on_stdout: StdoutFilter,
    log: LineWriter,
    captured: Arc<Mutex<Vec<String>>>,
    cancel: CancellationToken,
) -> Result<ExitStatus, ComputeError> {
    let mut command = tokio::process::Command::from(command);
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| ComputeError::fatal(format!("cannot start {program}: {e}")))?;
    let pid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ComputeError::fatal(format!(
            "cannot read the output of {program}"
        )));
    };
    let log_out = log.clone();
    let log_err = log;
    let out_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("orch:") {
                captured.lock().expect("captured lock").push(line.clone());
            }
            if let Some((level, text)) = on_stdout(&line) {
                log_out.line(LogStream::Stdout, level, text);
            }
        }
    });
    let err_task = tokio::spawn(async move {
        let mut tail: Vec<String> = Vec::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tail.push(line.clone());
            if tail.len() > 20 {
                tail.remove(0);
            }
            log_err.line(LogStream::Stderr, LogLevel::Info, line);
        }
        tail
    });
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| ComputeError::new(format!("waiting for {program}: {e}")))?,
        () = cancel.cancelled() => {
            if let Some(pid) = pid {
                kill_group(pid, Signal::Term);
                if tokio::time::timeout(CHILD_GRACE, child.wait()).await.is_err() {
                    kill_group(pid, Signal::Kill);
                    let _ = child.wait().await;
                }
                // Whatever the group's leader did, leave no member behind.
                kill_group(pid, Signal::Kill);
            }
            let _ = out_task.await;
            let _ = err_task.await;
            return Err(ComputeError::canceled());
        }
    };
    // A reader task that panicked loses the rest of its output, not the step.
    let _ = out_task.await;
    let tail = err_task.await.unwrap_or_default();
    if status.success() {
        Ok(status)
    } else {
        Err(ComputeError::new(exit_message(&program, status, &tail)))
    }
}

fn exit_message(program: &str, status: ExitStatus, tail: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    };
    let mut message = format!("{program} exited with {how}");
    if let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty()) {
        message.push_str(": ");
        message.push_str(last.trim());
    }
    if tail.len() > 1 {
        message.push_str("\nlast lines of stderr:\n");
        message.push_str(&tail.join("\n"));
    }
    message
}

/// Makes the child receive SIGKILL when orch dies (even by SIGKILL), so that a run whose
/// daemon was killed does not keep a step running while the run is re-queued elsewhere.
/// Linux only; grandchildren that the child starts are not covered.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) is async-signal-safe, the only kind of call allowed between fork and
    // exec; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Sends a signal to a whole process group (the child made itself its group's leader).
#[allow(unsafe_code)]
fn kill_group(pid: u32, signal: Signal) {
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group; it has no memory
        // effects on this process.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}
