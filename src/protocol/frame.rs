//! Kafka's framing: every request and response is a big-endian `i32` size, then that many bytes.
//!
//! The proxy never copies a frame to find it: it looks at the size prefix inside its read
//! buffer and either finds a complete frame there, learns how many more bytes to wait for, or
//! learns that the size is one no honest peer sends (negative, too small to hold a header, or
//! over the configured maximum), which closes the connection.

/// Bytes of the size prefix.
pub const SIZE_PREFIX: usize = 4;

/// What the start of a read buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// A whole frame of this many bytes, size prefix included.
    Complete(usize),
    /// Not enough bytes yet; `total` is the full frame length once the prefix is known.
    Incomplete { total: Option<usize> },
}

/// A size prefix no well-behaved peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error("frame of {size} bytes is shorter than the {min}-byte header")]
    TooSmall { size: usize, min: usize },
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes (proxy.maxFrameBytes)")]
    TooLarge { size: usize, max: usize },
}

/// Limits a frame size must respect.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    pub min_body: usize,
    pub max_body: usize,
}

/// Examine the frame at the start of `buf`.
pub fn frame_at(buf: &[u8], limits: FrameLimits) -> Result<FrameStatus, FrameError> {
    let Some(prefix) = buf.get(..SIZE_PREFIX) else {
        return Ok(FrameStatus::Incomplete { total: None });
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size < limits.min_body {
        return Err(FrameError::TooSmall { size, min: limits.min_body });
    }
    if size > limits.max_body {
        return Err(FrameError::TooLarge { size, max: limits.max_body });
    }
    let total = SIZE_PREFIX + size;
    if buf.len() >= total {
        Ok(FrameStatus::Complete(total))
    } else {
        Ok(FrameStatus::Incomplete { total: Some(total) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits { min_body: 4, max_body: 100 };

    #[test]
    fn finds_complete_and_partial_frames() {
        assert_eq!(frame_at(&[0, 0], LIMITS), Ok(FrameStatus::Incomplete { total: None }));
        assert_eq!(frame_at(&[0, 0, 0, 5, 1, 2], LIMITS), Ok(FrameStatus::Incomplete { total: Some(9) }));
        assert_eq!(frame_at(&[0, 0, 0, 4, 1, 2, 3, 4, 9], LIMITS), Ok(FrameStatus::Complete(8)));
    }

    #[test]
    fn refuses_bad_sizes() {
        assert_eq!(frame_at(&[0xff, 0xff, 0xff, 0xff], LIMITS), Err(FrameError::Negative(-1)));
        assert_eq!(frame_at(&[0, 0, 0, 2], LIMITS), Err(FrameError::TooSmall { size: 2, min: 4 }));
        assert_eq!(frame_at(&[0, 0, 1, 0], LIMITS), Err(FrameError::TooLarge { size: 256, max: 100 }));
    }
}
