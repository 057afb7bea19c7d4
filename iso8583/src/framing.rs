//! Framing: every message on the wire is preceded by its length as 2 bytes, big-endian.

/// Why a stream can no longer be read: the peer broke framing, so the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame announced {length} bytes; at most {max} are accepted")]
    TooLarge { length: usize, max: usize },
    #[error("a frame announced 0 bytes")]
    Empty,
}

/// `message` with its 2-byte length header. Messages are far below 64 KiB; a longer one is a
/// bug in the caller, so it panics rather than send a wrong length.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2);
    frame_into(&mut out, message);
    out
}

/// Appends `message` with its length header to `out`.
pub fn frame_into(out: &mut Vec<u8>, message: &[u8]) {
    let length = u16::try_from(message.len()).expect("an ISO 8583 message is under 64 KiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
}

/// Cuts whole frames off the front of a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Framer {
    max: usize,
}

impl Framer {
    /// Frames over `max` bytes (without the header) are refused.
    pub fn new(max: usize) -> Self {
        Self { max }
    }

    /// The next whole frame in `buffer[*start..]`, advancing `start` past it; `Ok(None)` when
    /// more bytes are needed. A too-large or empty frame is an error before its body arrives.
    pub fn next<'a>(
        &self,
        buffer: &'a [u8],
        start: &mut usize,
    ) -> Result<Option<&'a [u8]>, FrameError> {
        let rest = buffer.get(*start..).unwrap_or_default();
        let Some(header) = rest.get(..2) else {
            return Ok(None);
        };
        let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
        if length == 0 {
            return Err(FrameError::Empty);
        }
        if length > self.max {
            return Err(FrameError::TooLarge {
                length,
                max: self.max,
            });
        }
        let Some(body) = rest.get(2..2 + length) else {
            return Ok(None);
        };
        *start += 2 + length;
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_byte_come_out_whole() {
        let mut stream = frame(b"0800abc");
        stream.extend(frame(b"0810de"));
        let framer = Framer::new(100);
        for cut in 0..stream.len() {
            let mut seen = Vec::new();
            let mut buffer = stream[..cut].to_vec();
            let mut start = 0;
            while let Some(f) = framer.next(&buffer, &mut start).unwrap() {
                seen.push(f.to_vec());
            }
            buffer.drain(..start);
            buffer.extend_from_slice(&stream[cut..]);
            start = 0;
            while let Some(f) = framer.next(&buffer, &mut start).unwrap() {
                seen.push(f.to_vec());
            }
            assert_eq!(
                seen,
                vec![b"0800abc".to_vec(), b"0810de".to_vec()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_and_empty_frames_are_refused_from_the_header() {
        let framer = Framer::new(8);
        let mut start = 0;
        assert_eq!(
            framer.next(&[0, 9], &mut start),
            Err(FrameError::TooLarge { length: 9, max: 8 })
        );
        assert_eq!(framer.next(&[0, 0], &mut start), Err(FrameError::Empty));
        assert_eq!(start, 0);
    }
}
