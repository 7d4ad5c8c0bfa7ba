// SPDX-License-Identifier: GPL-2.0

//! Bounds-checked little-endian cursors over byte buffers.

use super::error::{Error, Result};

/// Reads little-endian fields from untrusted bytes. Every read checks bounds.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    /// Bytes not read yet.
    pub const fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian i32.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `n` reserved bytes, which must be zero.
    pub fn reserved(&mut self, n: usize) -> Result {
        if self.bytes(n)?.iter().any(|&b| b != 0) {
            return Err(Error::Reserved);
        }
        Ok(())
    }

    /// Succeeds only when every byte was consumed.
    pub fn finish(&self) -> Result {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::Trailing)
        }
    }
}

/// Writes little-endian fields into a caller buffer.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written yet.
    pub const fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Appends `src`.
    pub fn bytes(&mut self, src: &[u8]) -> Result {
        let end = self.pos.checked_add(src.len()).ok_or(Error::NoSpace)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(src);
        self.pos = end;
        Ok(())
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> Result {
        self.bytes(&[v])
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) -> Result {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) -> Result {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian i32.
    pub fn i32(&mut self, v: i32) -> Result {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) -> Result {
        self.bytes(&v.to_le_bytes())
    }

    /// `n` zero bytes.
    pub fn zeros(&mut self, n: usize) -> Result {
        for _ in 0..n {
            self.u8(0)?;
        }
        Ok(())
    }

    /// Overwrites bytes at `at`, already written.
    fn patch(&mut self, at: usize, src: &[u8]) -> Result {
        let end = at.checked_add(src.len()).ok_or(Error::NoSpace)?;
        if end > self.pos {
            return Err(Error::NoSpace);
        }
        self.buf
            .get_mut(at..end)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(src);
        Ok(())
    }

    /// Overwrites the u16 at `at`, already written.
    pub fn patch_u16(&mut self, at: usize, v: u16) -> Result {
        self.patch(at, &v.to_le_bytes())
    }

    /// Overwrites the u32 at `at`, already written.
    pub fn patch_u32(&mut self, at: usize, v: u32) -> Result {
        self.patch(at, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u16(), Err(Error::Truncated));
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn reserved_must_be_zero() {
        assert_eq!(Reader::new(&[0, 0]).reserved(2), Ok(()));
        assert_eq!(Reader::new(&[0, 1]).reserved(2), Err(Error::Reserved));
    }

    #[test]
    fn writes_are_bounded() {
        let mut buf = [0u8; 5];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.u32(0x0403_0201), Ok(()));
        assert_eq!(w.u16(7), Err(Error::NoSpace));
        assert_eq!(w.len(), 4);
        assert_eq!(w.patch_u32(0, 9), Ok(()));
        assert_eq!(w.patch_u32(2, 9), Err(Error::NoSpace));
        assert_eq!(buf, [9, 0, 0, 0, 0]);
    }
}
