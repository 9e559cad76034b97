//! Loads the freshly built `libgstwhipwhep.so` the way an application does
//! (through GST_PLUGIN_PATH and the registry, not `plugin_register_static`)
//! and checks what `gst-inspect-1.0` shows of each element.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const PLUGIN_FILE: &str = "libgstwhipwhep.so";
const ELEMENTS: &[&str] = &["whipsink", "whipserversrc", "whepsrc", "whepserversink"];
/// Properties of GstObject and GstBin, which gst-inspect lists too.
const INHERITED: &[&str] = &["name", "parent", "async-handling", "message-forward"];

/// The cdylib that cargo built with this test binary.
///
/// Test binaries live in `target/<profile>/deps/`. `cargo test` compiles the
/// library with all of its crate types, so the cdylib is written next to the
/// test binary, in `deps/`, by the same rustc run as the rlib this test links;
/// it is copied up to `target/<profile>/` only by `cargo build`, so that copy
/// is looked at second and may be older.
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(PLUGIN_FILE))
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{PLUGIN_FILE} not found (looked at {candidates:?}); \
                 is crate-type \"cdylib\" still in Cargo.toml?"
            )
        })
}

/// A private directory holding only a copy of the plugin, and the registry
/// file. Pointing GST_PLUGIN_PATH at `deps/` itself would make GStreamer open
/// every proc-macro `.so` there (it scans recursively).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(plugin: &Path) -> Self {
        // One per test: the tests of this file run in parallel threads.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "gst-inspect-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("plugins")).expect("create scratch directory");
        fs::copy(plugin, dir.join("plugins").join(PLUGIN_FILE)).expect("copy the plugin");
        Scratch { dir }
    }

    fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    fn registry(&self) -> PathBuf {
        self.dir.join("registry.bin")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn gst_inspect(scratch: &Scratch, element: &str) -> String {
    let output = Command::new("gst-inspect-1.0")
        .arg(element)
        .env("GST_PLUGIN_PATH", scratch.plugin_dir())
        .env("GST_REGISTRY", scratch.registry())
        .env("GST_INSPECT_NO_COLORS", "1")
        .env_remove("GST_PLUGIN_PATH_1_0")
        .env_remove("GST_REGISTRY_1_0")
        .output()
        .unwrap_or_else(|err| {
            if err.kind() == ErrorKind::NotFound {
                panic!(
                    "gst-inspect-1.0 is not installed (Debian package gstreamer1.0-tools; \
                     scripts/install-deps.sh installs it)"
                )
            }
            panic!("could not run gst-inspect-1.0: {err}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "gst-inspect-1.0 {element} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// `(name, description)` of each entry under "Element Properties:". Entries
/// start with two spaces, the name, padding and `: `; longer names are
/// followed by `:` directly. Deeper-indented lines are flags, defaults and
/// enum values.
fn properties(inspect: &str) -> Vec<(String, String)> {
    let mut lines = inspect.lines();
    assert!(
        lines.any(|line| line.trim_end() == "Element Properties:"),
        "no \"Element Properties:\" section in:\n{inspect}"
    );
    let mut props = Vec::new();
    for line in lines {
        if !line.is_empty() && !line.starts_with(' ') {
            break; // next section
        }
        let Some(entry) = line.strip_prefix("  ") else {
            continue;
        };
        if entry.starts_with(' ') || entry.is_empty() {
            continue;
        }
        let (name, description) = entry.split_once(':').unwrap_or((entry, ""));
        props.push((name.trim().to_owned(), description.trim().to_owned()));
    }
    props
}

#[test]
fn gst_inspect_lists_every_property_with_a_description() {
    let scratch = Scratch::new(&built_plugin());
    let expected_file = scratch.plugin_dir().join(PLUGIN_FILE);
    let mut problems = Vec::new();

    for element in ELEMENTS {
        let inspect = gst_inspect(&scratch, element);
        assert!(
            inspect.contains(&*expected_file.to_string_lossy()),
            "gst-inspect-1.0 {element} did not load {}:\n{inspect}",
            expected_file.display()
        );

        let own: Vec<_> = properties(&inspect)
            .into_iter()
            .filter(|(name, _)| !INHERITED.contains(&name.as_str()))
            .collect();
        assert!(
            !own.is_empty(),
            "no properties of {element} itself found in:\n{inspect}"
        );
        for (name, description) in own {
            if description.is_empty() || description == "(null)" {
                problems.push(format!("{element}::{name}"));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "properties without a description: {}",
        problems.join(", ")
    );
}

/// A field of gst-inspect's "Plugin Details:" section, e.g. "Name".
fn plugin_detail(inspect: &str, field: &str) -> Option<String> {
    inspect
        .lines()
        .skip_while(|line| line.trim_end() != "Plugin Details:")
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(field)?;
            rest.starts_with(' ').then(|| rest.trim().to_owned())
        })
}

/// The "flags:" line of property `name`, which gst-inspect prints below it.
fn property_flags(inspect: &str, name: &str) -> String {
    let mut lines = inspect
        .lines()
        .skip_while(|line| line.trim_end() != "Element Properties:");
    let start = format!("  {name} ");
    let start_colon = format!("  {name}:");
    lines
        .find(|line| line.starts_with(&start) || line.starts_with(&start_colon))
        .unwrap_or_else(|| panic!("no property {name} in:\n{inspect}"));
    lines
        .take_while(|line| line.starts_with("    "))
        .find_map(|line| line.trim().strip_prefix("flags:").map(str::trim))
        .unwrap_or_else(|| panic!("no flags line for {name} in:\n{inspect}"))
        .to_owned()
}

fn property_blurb(inspect: &str, element: &str, name: &str) -> String {
    properties(inspect)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{element} has no property {name}"))
        .1
}

/// gst-plugins-rs registers elements of the same names (webrtchttp's
/// whipsink and whepsrc, rswebrtc's whipserversrc and whepserversink), and
/// GStreamer keeps one factory per name. If one of those plugins is
/// installed and wins, this fails saying so (see README, "If gst-plugins-rs
/// is installed too").
#[test]
fn every_element_comes_from_plugin_whipwhep() {
    let scratch = Scratch::new(&built_plugin());
    for element in ELEMENTS {
        let inspect = gst_inspect(&scratch, element);
        let plugin = plugin_detail(&inspect, "Name");
        let filename = plugin_detail(&inspect, "Filename");
        assert_eq!(
            plugin.as_deref(),
            Some("whipwhep"),
            "the {element} factory GStreamer picks comes from plugin {plugin:?} ({filename:?}), \
             not ours: another plugin (gst-plugins-rs?) registers an element of the same name"
        );
    }
}

#[test]
fn plugin_origin_is_not_a_placeholder() {
    let scratch = Scratch::new(&built_plugin());
    let inspect = gst_inspect(&scratch, "whipsink");
    let origin = plugin_detail(&inspect, "Origin URL").expect("an Origin URL line");
    assert!(
        !origin.contains("example.invalid") && !origin.is_empty(),
        "origin: {origin:?}"
    );
}

#[test]
fn server_elements_document_their_own_properties() {
    let scratch = Scratch::new(&built_plugin());
    let whip = gst_inspect(&scratch, "whipserversrc");
    let whep = gst_inspect(&scratch, "whepserversink");

    // A send-only element has no jitterbuffer.
    assert!(
        properties(&whep).iter().all(|(name, _)| name != "latency"),
        "whepserversink lists a latency property"
    );
    assert!(properties(&whip).iter().any(|(name, _)| name == "latency"));

    let whip_path = property_blurb(&whip, "whipserversrc", "path");
    let whep_path = property_blurb(&whep, "whepserversink", "path");
    assert_ne!(whip_path, whep_path, "both path properties say the same");
    assert!(
        whip_path.contains("WHIP"),
        "whipserversrc path: {whip_path}"
    );
    assert!(
        !whip_path.contains("WHEP"),
        "whipserversrc path: {whip_path}"
    );
    assert!(
        whep_path.contains("WHEP"),
        "whepserversink path: {whep_path}"
    );
    assert!(
        !whep_path.contains("WHIP"),
        "whepserversink path: {whep_path}"
    );

    // address, path and auth-token are read when the element binds, in
    // NULL→READY: GStreamer has no "NULL only" flag, so no mutability flag
    // may be claimed, and the description says it instead.
    for (element, inspect) in [("whipserversrc", &whip), ("whepserversink", &whep)] {
        for name in ["address", "path", "auth-token"] {
            let flags = property_flags(inspect, name);
            assert!(
                !flags.contains("changeable"),
                "{element}::{name} claims {flags:?}, but is read only in NULL→READY"
            );
            let blurb = property_blurb(inspect, element, name);
            assert!(
                blurb.contains("Set it in NULL state"),
                "{element}::{name} does not say when it can be set: {blurb}"
            );
        }
        let flags = property_flags(inspect, "max-session-duration");
        assert!(
            flags.contains("changeable in NULL, READY, PAUSED or PLAYING state"),
            "{element}::max-session-duration: {flags}"
        );
    }
}
