//! libnice's ICE restart, which webrtcbin 1.22 does not expose: its
//! `GstWebRTCICE` has no restart, and credentials changed in the SDP alone
//! leave libnice's failed pairs failed. `nice_agent_restart` clears the
//! remote candidates and checks of every stream of the agent (a webrtcbin
//! with max-bundle has one), keeping the selected pair until a new one is
//! nominated, so that a working path carries media through the restart.
//!
//! libnice is loaded by webrtcbin's ICE library, not linked by this plugin
//! (no libnice headers or link library are needed to build it), so the
//! function is looked up in the library already loaded.

use std::ffi::{c_char, c_int, c_void};
use std::sync::LazyLock;

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's values.
const RTLD_NOW: c_int = 2;
const RTLD_NOLOAD: c_int = 4;

type RestartFn =
    unsafe extern "C" fn(agent: *mut glib::gobject_ffi::GObject) -> glib::ffi::gboolean;

/// `nice_agent_restart`, once libnice is loaded (a webrtcbin exists).
fn restart_fn() -> Option<RestartFn> {
    static FOUND: LazyLock<Option<usize>> = LazyLock::new(|| {
        // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library
        // already loaded (never loads or runs anything); the strings are
        // NUL-terminated literals.
        let handle = unsafe { dlopen(c"libnice.so.10".as_ptr(), RTLD_NOW | RTLD_NOLOAD) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: a valid handle and a NUL-terminated name; the address is
        // only used as the function libnice's header declares.
        let sym = unsafe { dlsym(handle, c"nice_agent_restart".as_ptr()) };
        (!sym.is_null()).then_some(sym as usize)
    });
    // SAFETY: the symbol is libnice's `gboolean nice_agent_restart (NiceAgent *)`.
    FOUND.map(|addr| unsafe { std::mem::transmute::<usize, RestartFn>(addr) })
}

/// Restarts ICE on `agent` (a NiceAgent, webrtcbin's ice-agent's `agent`):
/// new local credentials inside libnice (the SDP's replace them when the
/// next description is set), remote candidates and checks cleared.
pub fn restart(agent: &glib::Object) -> Result<(), String> {
    if agent.type_().name() != "NiceAgent" {
        return Err(format!(
            "ICE agent is a {}, not libnice's",
            agent.type_().name()
        ));
    }
    let restart = restart_fn().ok_or("libnice's nice_agent_restart was not found")?;
    let ptr: *mut glib::gobject_ffi::GObject = agent.to_glib_none().0;
    // SAFETY: `ptr` is a live NiceAgent (type checked above, and `agent`
    // holds a reference for the call); libnice takes its own lock.
    let ok = unsafe { restart(ptr) };
    if ok == glib::ffi::GFALSE {
        return Err("libnice refused the ICE restart".into());
    }
    Ok(())
}
