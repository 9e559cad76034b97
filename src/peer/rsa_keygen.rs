//! A faster RSA-2048 key generation for the one key `dtlsdec` insists on.
//!
//! The first `dtlsdec` of a process (GStreamer 1.22, `gst_dtls_dec_init`)
//! generates an RSA-2048 certificate with `RSA_new()` +
//! `RSA_generate_key_ex()`, whatever PEM is set afterwards. Our peers always
//! set our ECDSA certificate (see `certificate`), so that key is a
//! placeholder, but every fresh process waits for it before its first offer.
//! OpenSSL 3 takes the SP 800-56B route for 2048-bit keys: 0.2–0.9 s here
//! (`openssl genrsa 2048`, median ~0.43 s).
//!
//! While our prewarm thread creates that first `dtlsdec`, the default
//! `RSA_METHOD` carries a key generator that searches the two 1024-bit primes
//! at once, one per thread, with OpenSSL's own `BN_generate_prime_ex` (the
//! classic OpenSSL 1.1 algorithm: top two bits set, gcd(p-1, e) = 1, private
//! exponent modulo lcm(p-1, q-1)): median ~55 ms here. The key is a full
//! 2048-bit key with e = 65537. Any other RSA key generation in the process,
//! on any other thread or of any other size, takes OpenSSL's usual route.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::error::ErrorStack;
use openssl_sys::{BIGNUM, BN_GENCB, RSA, RSA_METHOD};

const BITS: c_int = 2048;
const F4: u32 = 65_537;

type KeygenFn = unsafe extern "C" fn(*mut RSA, c_int, *mut BIGNUM, *mut BN_GENCB) -> c_int;

// Deprecated in OpenSSL 3.0 but exported by every 3.x libcrypto; the
// openssl-sys crate does not declare them.
extern "C" {
    fn RSA_get_default_method() -> *const RSA_METHOD;
    fn RSA_set_default_method(meth: *const RSA_METHOD);
    fn RSA_set_method(rsa: *mut RSA, meth: *const RSA_METHOD) -> c_int;
    fn RSA_meth_dup(meth: *const RSA_METHOD) -> *mut RSA_METHOD;
    fn RSA_meth_set_keygen(meth: *mut RSA_METHOD, keygen: Option<KeygenFn>) -> c_int;
}

thread_local! {
    static FAST_KEYGEN: Cell<bool> = const { Cell::new(false) };
}

/// Keys made here, for the tests and the debug log.
static FAST_KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many keys the parallel generator has made in this process.
pub fn fast_keys() -> usize {
    FAST_KEYS.load(Ordering::Relaxed)
}

/// The default method as it was before ours: where every key we do not make
/// ourselves goes back to.
static PREVIOUS: AtomicPtr<RSA_METHOD> = AtomicPtr::new(std::ptr::null_mut());

/// Our method: the previous default with only the key generator replaced.
/// Made once and never freed, because RSA objects created meanwhile keep
/// pointing at it.
struct Method(*const RSA_METHOD);
// SAFETY: an RSA_METHOD is immutable once set up and OpenSSL shares it
// between threads.
unsafe impl Send for Method {}
unsafe impl Sync for Method {}

fn method() -> Option<*const RSA_METHOD> {
    static METHOD: OnceLock<Option<Method>> = OnceLock::new();
    METHOD
        .get_or_init(|| unsafe {
            let previous = RSA_get_default_method();
            let ours = RSA_meth_dup(previous);
            if ours.is_null() || RSA_meth_set_keygen(ours, Some(keygen)) != 1 {
                return None;
            }
            PREVIOUS.store(previous.cast_mut(), Ordering::Release);
            Some(Method(ours))
        })
        .as_ref()
        .map(|m| m.0)
}

/// Runs `f` with the parallel RSA-2048 key generation in force on this
/// thread, then puts the previous default `RSA_METHOD` back.
pub fn with_fast_keygen<T>(f: impl FnOnce() -> T) -> T {
    let Some(ours) = method() else {
        return f();
    };
    let previous = PREVIOUS.load(Ordering::Acquire);
    FAST_KEYGEN.with(|fast| fast.set(true));
    // SAFETY: both methods live for the rest of the process.
    unsafe { RSA_set_default_method(ours) };
    let result = f();
    unsafe { RSA_set_default_method(previous) };
    FAST_KEYGEN.with(|fast| fast.set(false));
    result
}

/// The `RSA_METHOD` key generator. Off our thread, or for any other size or
/// exponent, it hands the key to OpenSSL's own generator.
unsafe extern "C" fn keygen(
    rsa: *mut RSA,
    bits: c_int,
    e: *mut BIGNUM,
    cb: *mut BN_GENCB,
) -> c_int {
    let ours = FAST_KEYGEN.with(Cell::get)
        && bits == BITS
        && !e.is_null()
        && BigNum::from_u32(F4).is_ok_and(|f4| *BigNumRef::from_ptr(e) == *f4);
    if ours {
        if let Ok(Ok(key)) = std::panic::catch_unwind(generate) {
            FAST_KEYS.fetch_add(1, Ordering::Relaxed);
            return key.install(rsa);
        }
    }
    // The previous method has no key generator of its own (or OpenSSL's
    // engine one), so RSA_generate_key_ex takes OpenSSL's usual route.
    let previous = PREVIOUS.load(Ordering::Acquire);
    if previous.is_null() || RSA_set_method(rsa, previous) != 1 {
        return 0;
    }
    openssl_sys::RSA_generate_key_ex(rsa, bits, e, cb)
}

/// The parts of an RSA private key, before they are handed to OpenSSL.
struct Key {
    n: BigNum,
    e: BigNum,
    d: BigNum,
    p: BigNum,
    q: BigNum,
    dmp1: BigNum,
    dmq1: BigNum,
    iqmp: BigNum,
}

impl Key {
    /// Moves the parts into `rsa`. Returns 1 like the OpenSSL callback.
    unsafe fn install(self, rsa: *mut RSA) -> c_int {
        let Key {
            n,
            e,
            d,
            p,
            q,
            dmp1,
            dmq1,
            iqmp,
        } = self;
        // RSA_set0_* take ownership of what they accept.
        let ok = openssl_sys::RSA_set0_key(rsa, release(n), release(e), release(d)) == 1
            && openssl_sys::RSA_set0_factors(rsa, release(p), release(q)) == 1
            && openssl_sys::RSA_set0_crt_params(rsa, release(dmp1), release(dmq1), release(iqmp))
                == 1;
        c_int::from(ok)
    }
}

/// Hands a number's ownership to OpenSSL.
fn release(n: BigNum) -> *mut BIGNUM {
    let ptr = n.as_ptr();
    std::mem::forget(n);
    ptr
}

/// One 1024-bit prime p with gcd(p - 1, e) = 1.
fn prime(e: &BigNumRef) -> Result<BigNum, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    let one = BigNum::from_u32(1)?;
    loop {
        // OpenSSL sets the top two bits, so p * q has exactly 2048 bits, and
        // runs its Miller-Rabin rounds for a 2^-128 error bound.
        let mut p = BigNum::new()?;
        p.generate_prime(BITS / 2, false, None, None)?;
        let mut p1 = BigNum::new()?;
        p1.checked_sub(&p, &one)?;
        let mut gcd = BigNum::new()?;
        gcd.gcd(&p1, e, &mut ctx)?;
        if gcd == one {
            return Ok(p);
        }
    }
}

/// An RSA-2048 key with e = 65537, its two primes searched at once.
fn generate() -> Result<Key, ErrorStack> {
    let e = BigNum::from_u32(F4)?;
    let mut ctx = BigNumContext::new()?;
    let one = BigNum::from_u32(1)?;
    loop {
        let (p, q) = std::thread::scope(|s| {
            let other = s.spawn(|| prime(&e));
            let p = prime(&e);
            let q = other.join().unwrap_or_else(|_| prime(&e));
            (p, q)
        });
        let (mut p, mut q) = (p?, q?);
        // FIPS 186-4 B.3.1: |p - q| > 2^(nlen/2 - 100). Failing it means
        // a broken random source more than bad luck; draw again.
        let mut diff = BigNum::new()?;
        diff.checked_sub(&p, &q)?;
        if diff.num_bits() <= BITS / 2 - 100 {
            continue;
        }
        if p < q {
            std::mem::swap(&mut p, &mut q);
        }
        let mut n = BigNum::new()?;
        n.checked_mul(&p, &q, &mut ctx)?;
        let (mut p1, mut q1) = (BigNum::new()?, BigNum::new()?);
        p1.checked_sub(&p, &one)?;
        q1.checked_sub(&q, &one)?;
        // d = e^-1 mod lcm(p - 1, q - 1).
        let (mut phi, mut gcd, mut lcm) = (BigNum::new()?, BigNum::new()?, BigNum::new()?);
        phi.checked_mul(&p1, &q1, &mut ctx)?;
        gcd.gcd(&p1, &q1, &mut ctx)?;
        lcm.checked_div(&phi, &gcd, &mut ctx)?;
        let mut d = BigNum::new()?;
        d.mod_inverse(&e, &lcm, &mut ctx)?;
        let (mut dmp1, mut dmq1, mut iqmp) = (BigNum::new()?, BigNum::new()?, BigNum::new()?);
        dmp1.checked_rem(&d, &p1, &mut ctx)?;
        dmq1.checked_rem(&d, &q1, &mut ctx)?;
        iqmp.mod_inverse(&q, &p, &mut ctx)?;
        return Ok(Key {
            n,
            e,
            d,
            p,
            q,
            dmp1,
            dmq1,
            iqmp,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    #[test]
    fn fast_keygen_makes_a_valid_2048_bit_key_on_its_thread_only() {
        let before = FAST_KEYS.load(Ordering::Relaxed);
        let key = with_fast_keygen(|| Rsa::generate(BITS as u32)).unwrap();
        assert!(
            FAST_KEYS.load(Ordering::Relaxed) > before,
            "not made by our generator"
        );
        assert_eq!(key.size() * 8, BITS as u32);
        assert_eq!(*key.e(), *BigNum::from_u32(F4).unwrap());
        assert!(key.check_key().unwrap());

        // Other sizes, and later calls, go OpenSSL's usual way and still work.
        let small = with_fast_keygen(|| Rsa::generate(1024)).unwrap();
        assert!(small.check_key().unwrap());
        assert!(Rsa::generate(BITS as u32).unwrap().check_key().unwrap());
    }

    #[test]
    fn a_key_signs_and_verifies() {
        let key = with_fast_keygen(|| Rsa::generate(BITS as u32)).unwrap();
        let pkey = openssl::pkey::PKey::from_rsa(key).unwrap();
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        signer.update(b"whip").unwrap();
        let signature = signer.sign_to_vec().unwrap();
        let mut verifier =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        verifier.update(b"whip").unwrap();
        assert!(verifier.verify(&signature).unwrap());
    }
}
