//! Little-endian readers and writers over byte slices. Every access is bounds-checked and
//! returns an error instead of panicking; a writer fills every byte it is given, so no
//! uninitialised or stale byte can reach user mode.

use ntstatus::NtStatus;

use crate::error::AbiError;

/// Reads fields in order from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], AbiError> {
        let end = self.at.checked_add(N).ok_or(AbiError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(AbiError::Truncated)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        self.at = end;
        Ok(out)
    }

    /// Read a `u16`.
    ///
    /// # Errors
    /// [`AbiError::Truncated`] past the end.
    pub fn u16(&mut self) -> Result<u16, AbiError> {
        self.take().map(u16::from_le_bytes)
    }

    /// Read a `u32`.
    ///
    /// # Errors
    /// [`AbiError::Truncated`] past the end.
    pub fn u32(&mut self) -> Result<u32, AbiError> {
        self.take().map(u32::from_le_bytes)
    }

    /// Read an NTSTATUS (`i32`).
    ///
    /// # Errors
    /// [`AbiError::Truncated`] past the end.
    pub fn status(&mut self) -> Result<NtStatus, AbiError> {
        self.take().map(|b| NtStatus(i32::from_le_bytes(b)))
    }

    /// Read a `u64`.
    ///
    /// # Errors
    /// [`AbiError::Truncated`] past the end.
    pub fn u64(&mut self) -> Result<u64, AbiError> {
        self.take().map(u64::from_le_bytes)
    }

    /// Read `N` raw bytes.
    ///
    /// # Errors
    /// [`AbiError::Truncated`] past the end.
    pub fn bytes<const N: usize>(&mut self) -> Result<[u8; N], AbiError> {
        self.take()
    }

    /// Read a reserved `u32` that must be zero.
    ///
    /// # Errors
    /// [`AbiError::Truncated`], or [`AbiError::ReservedNotZero`] naming `field`.
    pub fn reserved32(&mut self, field: &'static str) -> Result<(), AbiError> {
        match self.u32()? {
            0 => Ok(()),
            _ => Err(AbiError::ReservedNotZero(field)),
        }
    }

    /// Read a reserved `u16` that must be zero.
    ///
    /// # Errors
    /// [`AbiError::Truncated`], or [`AbiError::ReservedNotZero`] naming `field`.
    pub fn reserved16(&mut self, field: &'static str) -> Result<(), AbiError> {
        match self.u16()? {
            0 => Ok(()),
            _ => Err(AbiError::ReservedNotZero(field)),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.at
    }
}

/// Writes fields in order into a byte slice.
#[derive(Debug)]
pub struct Writer<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    /// A writer over `bytes`.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn put(&mut self, src: &[u8]) -> Result<(), AbiError> {
        let end = self
            .at
            .checked_add(src.len())
            .ok_or(AbiError::OutputTooSmall)?;
        let dst = self
            .bytes
            .get_mut(self.at..end)
            .ok_or(AbiError::OutputTooSmall)?;
        dst.copy_from_slice(src);
        self.at = end;
        Ok(())
    }

    /// Write a `u16`.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] past the end.
    pub fn u16(&mut self, v: u16) -> Result<(), AbiError> {
        self.put(&v.to_le_bytes())
    }

    /// Write a `u32`.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] past the end.
    pub fn u32(&mut self, v: u32) -> Result<(), AbiError> {
        self.put(&v.to_le_bytes())
    }

    /// Write an NTSTATUS (`i32`).
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] past the end.
    pub fn status(&mut self, v: NtStatus) -> Result<(), AbiError> {
        self.put(&v.0.to_le_bytes())
    }

    /// Write a `u64`.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] past the end.
    pub fn u64(&mut self, v: u64) -> Result<(), AbiError> {
        self.put(&v.to_le_bytes())
    }

    /// Write raw bytes.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] past the end.
    pub fn bytes(&mut self, v: &[u8]) -> Result<(), AbiError> {
        self.put(v)
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.at
    }
}
