//! Structs that carry their own size: how the ABI grows.
//!
//! Every struct that crosses the C ABI by pointer starts with
//! `size_t struct_size`, which the caller sets to `sizeof` the struct as
//! its header declares it (the `LLAMETTE_*_INIT` macros do). Later
//! versions only append fields, each version's new fields starting at or
//! after the previous version's `sizeof`, so a size tells the library
//! which version the caller was compiled against:
//!
//! - an input struct is read only as far as its `struct_size` covers; the
//!   fields past it (appended after the caller was built) take their
//!   defaults;
//! - an output struct is written only as far as its `struct_size` covers
//!   (its `struct_size` is never written); bytes past what this library
//!   knows (a newer caller's fields) are left as the caller set them;
//! - a `struct_size` below the first version's `sizeof` is
//!   `INVALID_ARGUMENT`, checked before anything else happens.

use crate::error::*;

/// A `#[repr(C)]` struct of the C ABI whose first field is `struct_size:
/// usize`, set by the caller.
///
/// # Safety
///
/// The implementor is `#[repr(C)]`, its first field is `struct_size:
/// usize`, and every bit pattern of its bytes is a valid value (plain
/// integers, floats, raw pointers and nullable function pointers only: no
/// `bool` in structs the library reads). `MIN_SIZE` is at most
/// `size_of::<Self>()` and at least `size_of::<usize>()`.
pub(crate) unsafe trait SizedStruct: Copy + Default {
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// `sizeof` the first version of the struct: the smallest
    /// `struct_size` accepted.
    const MIN_SIZE: usize = core::mem::size_of::<Self>();
}

/// The caller's `struct_size` of the struct at `p`, checked against the
/// first version's size.
///
/// # Safety
///
/// `p` is non-NULL and its first `usize` is readable.
unsafe fn caller_size<T: SizedStruct>(p: *const T, arg: &str) -> Result<usize, Fail> {
    // SAFETY: the first field is a readable usize (the caller's contract);
    // no alignment is assumed.
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    if size < T::MIN_SIZE {
        fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "`{arg}->struct_size` is {size}: set it to sizeof({}) ({} bytes in this library, {} at least)",
            T::NAME,
            core::mem::size_of::<T>(),
            T::MIN_SIZE
        );
    }
    Ok(size)
}

/// Reads an input struct: the bytes its `struct_size` covers (at most
/// this library's `sizeof`), the rest from `T::default()`. `NULL` is
/// `NULL_ARGUMENT`.
///
/// # Safety
///
/// `p` is NULL, or points to a struct whose first field is readable and
/// which has `struct_size` readable bytes.
pub(crate) unsafe fn read_in<T: SizedStruct>(p: *const T, arg: &str) -> Result<T, Fail> {
    let p = non_null(p, arg)?;
    // SAFETY: non-NULL; the caller's contract.
    let size = unsafe { caller_size(p, arg) }?;
    let mut out = T::default();
    let n = size.min(core::mem::size_of::<T>());
    // SAFETY: `n` bytes are readable at `p` (at most the caller's size) and
    // writable in `out` (at most its size); every bit pattern is a valid
    // `T` (the trait's contract).
    unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n) };
    Ok(out)
}

/// An output struct whose size was checked: written by [`Out::write`].
#[derive(Debug)]
pub(crate) struct Out<T> {
    p: *mut T,
    size: usize,
}

impl<T: SizedStruct> Out<T> {
    /// Checks an output struct before any work: not NULL
    /// (`NULL_ARGUMENT`), a `struct_size` of at least the first version's
    /// (`INVALID_ARGUMENT`).
    ///
    /// # Safety
    ///
    /// `p` is NULL, or its first field is readable and `struct_size`
    /// bytes are writable until [`Out::write`].
    pub(crate) unsafe fn new(p: *mut T, arg: &str) -> Result<Out<T>, Fail> {
        let p = non_null_mut(p, arg)?;
        // SAFETY: non-NULL; the caller's contract.
        let size = unsafe { caller_size(p.cast_const(), arg) }?;
        Ok(Out { p, size })
    }

    /// Writes `v`'s fields after `struct_size`, as far as the caller's
    /// size (and this library's `sizeof`) reach.
    ///
    /// # Safety
    ///
    /// As [`Out::new`]: the struct is still writable.
    pub(crate) unsafe fn write(self, v: &T) {
        let skip = core::mem::size_of::<usize>();
        let n = self.size.min(core::mem::size_of::<T>());
        // SAFETY: bytes `skip..n` of the caller's struct are writable (its
        // size is at least `n`, and `n >= MIN_SIZE >= skip`); the source is
        // a whole `T`. The caller's `struct_size` stays as it is.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (v as *const T).cast::<u8>().add(skip),
                self.p.cast::<u8>().add(skip),
                n - skip,
            )
        };
    }
}
