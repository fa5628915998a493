//! What travels on a session link, one frame at a time.
//!
//! ```text
//!   frame = kind (1) ‖ step (4, BE) ‖ length (4, BE) ‖ payload (length bytes)
//!     1 Rows   stage i → i+1   payload: the step's activation rows, f32 LE
//!     2 Token  last → stage 0  payload: token (4, BE) ‖ last (1: 0 or 1)
//!     3 End    stage i → i+1   payload: empty; `step` = the session's step count
//!     4 Abort  either way      payload: UTF-8 reason (at most 1 KiB)
//!     5 Sync   last → stage 0  payload: the tokens sampled so far (4, BE each); `step` =
//!                              their count. First frame of every epoch (see `run`)
//!     6 Resume stage i → i+1   payload and `step` as Sync: the transcript every stage
//!                              rolls back or rebuilds to before the epoch's first step
//!     7 Pause  stage i → i+1   payload: empty; `step` = the stage that dropped out: the
//!                              sender ends the epoch for that stage's fault, not its own
//! ```
//!
//! A reader bounds every length before it allocates (the caller passes the most rows
//! a step may carry, prompt length × model width, and the most tokens a session may
//! sample), so a peer cannot make it allocate more than one legitimate frame.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest abort reason, in bytes.
pub const MAX_REASON: usize = 1024;

/// One frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Step `step`'s output rows of a stage, the next stage's input.
    Rows {
        /// The step (0 = the prompt's prefill).
        step: u32,
        /// `rows × width` values.
        rows: Vec<f32>,
    },
    /// The token the last stage sampled at `step`; `last` when it ends the session.
    Token {
        /// The step.
        step: u32,
        /// The token.
        token: u32,
        /// The session ends with it.
        last: bool,
    },
    /// The session ended after `steps` steps.
    End {
        /// Steps every stage computed.
        steps: u32,
    },
    /// The sender gave up on the session.
    Abort {
        /// Why.
        reason: String,
    },
    /// The last stage's transcript at the start of an epoch (to stage 0).
    Sync {
        /// The tokens sampled so far.
        tokens: Vec<u32>,
    },
    /// The transcript the epoch resumes from (stage 0 down the pipeline).
    Resume {
        /// The tokens every stage agrees on.
        tokens: Vec<u32>,
    },
    /// The sender ends this epoch because stage `stage` dropped out (so the link that
    /// closes next is not the sender's fault).
    Pause {
        /// The stage the sender blames.
        stage: u32,
    },
}

fn token_payload(tokens: &[u32]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_be_bytes()).collect()
}

fn tokens_of(p: &[u8], step: u32, kind: &'static str) -> Result<Vec<u32>, FrameError> {
    if !p.len().is_multiple_of(4) || p.len() / 4 != step as usize {
        return Err(FrameError::Malformed(kind));
    }
    Ok(p.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The link failed or closed.
    #[error("link: {0}")]
    Io(#[from] std::io::Error),
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A payload longer than this frame kind may be.
    #[error("a {kind} frame of {len} bytes (at most {max})")]
    TooLong {
        /// The frame kind.
        kind: &'static str,
        /// Its length.
        len: u32,
        /// The most allowed.
        max: usize,
    },
    /// A payload that does not fit its kind.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

impl Frame {
    /// The frame as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, step, payload): (u8, u32, Vec<u8>) = match self {
            Frame::Rows { step, rows } => {
                let mut p = Vec::with_capacity(rows.len() * 4);
                for v in rows {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                (1, *step, p)
            }
            Frame::Token { step, token, last } => {
                let mut p = token.to_be_bytes().to_vec();
                p.push(u8::from(*last));
                (2, *step, p)
            }
            Frame::End { steps } => (3, *steps, Vec::new()),
            Frame::Abort { reason } => {
                let mut r = reason.as_bytes().to_vec();
                r.truncate(MAX_REASON);
                (4, 0, r)
            }
            Frame::Sync { tokens } => (5, tokens.len() as u32, token_payload(tokens)),
            Frame::Resume { tokens } => (6, tokens.len() as u32, token_payload(tokens)),
            Frame::Pause { stage } => (7, *stage, Vec::new()),
        };
        let mut out = Vec::with_capacity(9 + payload.len());
        out.push(kind);
        out.extend_from_slice(&step.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Writes the frame and flushes it (each frame goes out at once).
    pub async fn write<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.encode()).await?;
        w.flush().await
    }

    /// Reads one frame whose `Rows` payload holds at most `max_values` values and whose
    /// `Sync` or `Resume` payload at most `max_tokens` tokens.
    pub async fn read<R: AsyncRead + Unpin>(
        r: &mut R,
        max_values: usize,
        max_tokens: usize,
    ) -> Result<Frame, FrameError> {
        let mut head = [0u8; 9];
        r.read_exact(&mut head).await?;
        let kind = head[0];
        let step = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        let (name, max) = match kind {
            1 => ("rows", max_values.saturating_mul(4)),
            2 => ("token", 5),
            3 => ("end", 0),
            4 => ("abort", MAX_REASON),
            5 => ("sync", max_tokens.saturating_mul(4)),
            6 => ("resume", max_tokens.saturating_mul(4)),
            7 => ("pause", 0),
            k => return Err(FrameError::Kind(k)),
        };
        if len as usize > max {
            return Err(FrameError::TooLong {
                kind: name,
                len,
                max,
            });
        }
        let mut p = vec![0u8; len as usize];
        r.read_exact(&mut p).await?;
        Frame::decode_payload(kind, step, &p)
    }

    /// A frame from its kind, step and payload.
    fn decode_payload(kind: u8, step: u32, p: &[u8]) -> Result<Frame, FrameError> {
        Ok(match kind {
            1 => {
                if p.is_empty() || !p.len().is_multiple_of(4) {
                    return Err(FrameError::Malformed("rows"));
                }
                let rows = p
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Frame::Rows { step, rows }
            }
            2 => {
                if p.len() != 5 || p[4] > 1 {
                    return Err(FrameError::Malformed("token"));
                }
                Frame::Token {
                    step,
                    token: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                    last: p[4] == 1,
                }
            }
            3 => Frame::End { steps: step },
            4 => Frame::Abort {
                reason: String::from_utf8_lossy(p).into_owned(),
            },
            5 => Frame::Sync {
                tokens: tokens_of(p, step, "sync")?,
            },
            6 => Frame::Resume {
                tokens: tokens_of(p, step, "resume")?,
            },
            7 => Frame::Pause { stage: step },
            k => return Err(FrameError::Kind(k)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(f: Frame) -> Frame {
        let bytes = f.encode();
        Frame::read(&mut bytes.as_slice(), 16, 8).await.unwrap()
    }

    #[tokio::test]
    async fn every_kind_round_trips() {
        for f in [
            Frame::Rows {
                step: 3,
                rows: vec![1.5, -0.0, f32::MIN_POSITIVE],
            },
            Frame::Token {
                step: 7,
                token: 49_151,
                last: true,
            },
            Frame::End { steps: 64 },
            Frame::Abort {
                reason: "stage 1 went away".into(),
            },
            Frame::Sync {
                tokens: vec![1, 2, 49_151],
            },
            Frame::Resume { tokens: vec![] },
            Frame::Pause { stage: 2 },
        ] {
            assert_eq!(roundtrip(f.clone()).await, f);
        }
    }

    #[tokio::test]
    async fn bad_frames_are_typed_errors_without_allocating() {
        // More rows than the reader allows: refused from the header alone.
        let big = Frame::Rows {
            step: 0,
            rows: vec![0.0; 17],
        }
        .encode();
        assert!(matches!(
            Frame::read(&mut big.as_slice(), 16, 8).await,
            Err(FrameError::TooLong { kind: "rows", .. })
        ));
        // A header claiming 4 GiB.
        let mut huge = vec![1u8, 0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Frame::read(&mut huge.as_slice(), 16, 8).await,
            Err(FrameError::TooLong { .. })
        ));
        // More tokens than the reader allows.
        let long = Frame::Sync { tokens: vec![0; 9] }.encode();
        assert!(matches!(
            Frame::read(&mut long.as_slice(), 16, 8).await,
            Err(FrameError::TooLong { kind: "sync", .. })
        ));
        // Unknown kind, ragged rows, a bad flag, a truncated frame, a count that is not
        // the payload's.
        let cases: [&[u8]; 5] = [
            &[9, 0, 0, 0, 0, 0, 0, 0, 0],
            &[6, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1],
            &[1, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
            &[2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 7],
            &[2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0],
        ];
        for c in cases {
            assert!(Frame::read(&mut &c[..], 16, 8).await.is_err(), "{c:?}");
        }
        // Every truncation of a valid frame is an error, never a panic.
        let ok = Frame::Token {
            step: 1,
            token: 2,
            last: false,
        }
        .encode();
        for n in 0..ok.len() {
            assert!(Frame::read(&mut &ok[..n], 16, 8).await.is_err());
        }
    }
}
