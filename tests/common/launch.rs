//! `gst-launch-1.0` as a user runs it, in a process of its own, with our
//! plugin from the build tree: for tests of whole command lines, Ctrl-C
//! included.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The crate's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Our plugin as cargo built it with the tests (`deps/libgstwhipwhep.so`,
/// made with the rlib they link; `target/debug/` has it only after `cargo
/// build`), copied into `dir/plugins`: a directory with nothing else, since
/// GStreamer scans GST_PLUGIN_PATH recursively and would open every other
/// `.so` under `target/`.
pub fn plugin_dir(dir: &Path) -> PathBuf {
    const PLUGIN: &str = "libgstwhipwhep.so";
    let build = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .expect("target/<profile>/");
    let plugin = [build.join("deps").join(PLUGIN), build.join(PLUGIN)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{PLUGIN} not found under {}", build.display()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&plugin, plugins.join(PLUGIN)).unwrap();
    plugins
}

/// `gst-launch-1.0 -e -v <args>` with our plugin, its output to a file.
pub struct Launch {
    pub child: Child,
    out: PathBuf,
}

impl Launch {
    pub fn start(args: &[String], dir: &Path) -> Launch {
        Self::start_with(&[], args, dir)
    }

    /// `prefix` runs first, and execs gst-launch-1.0 (e.g. `unshare -rn sh -c ...`).
    pub fn start_with(prefix: &[&str], args: &[String], dir: &Path) -> Launch {
        let out = dir.join("gst-launch.log");
        let log = std::fs::File::create(&out).unwrap();
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("gst-launch-1.0");
                c
            }
            None => Command::new("gst-launch-1.0"),
        };
        let child = command
            .arg("-e")
            .arg("-v")
            .args(args)
            .env("GST_PLUGIN_PATH", plugin_dir(dir))
            .env("GST_REGISTRY", dir.join("registry.bin"))
            .env_remove("GST_PLUGIN_PATH_1_0")
            .env_remove("GST_REGISTRY_1_0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("gst-launch-1.0 (gstreamer1.0-tools)");
        Launch { child, out }
    }

    pub fn output(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.out)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// Buffers that `fakesink silent=false` reported.
    pub fn sink_buffers(&self) -> usize {
        self.output()
            .lines()
            .filter(|l| l.contains("last-message = chain"))
            .count()
    }

    /// One SIGINT, as Ctrl-C; returns the exit code (None: still running 10 s
    /// later, then killed), how long it took, and the output.
    pub fn interrupt(mut self) -> (Option<i32>, Duration, String) {
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (code, start.elapsed(), self.output())
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of gst-launch's output, without the per-buffer ones.
pub fn tail(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("last-message = chain"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A fresh directory under target/ for one test's files.
pub fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("tmp"));
    let dir = base.join(format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
