//! Reading `text/event-stream` responses.
//!
//! ```text
//!  response bytes ─▶ FrameParser (lines, bounded) ─▶ frames() ─▶ Frame { kind, data }
//!                                                        │
//!                      events():         Event::parse ◀──┤   (node `/v1/events`)
//!                      session_events(): SessionEvent::parse ◀─┘ (provider `/v1/sessions/{job}/tokens`)
//! ```
//!
//! One parser reads every stream: a frame is the lines up to a blank line; its
//! `event:` line names it (default `message`), its `data:` lines (joined with `\n`) carry
//! it, lines starting with `:` are comments (keep-alives) and frames without data are
//! skipped. Lines end with `\n` or `\r\n`. A line longer than [`Limits::line`] or a
//! frame longer than [`Limits::frame`] ends the stream with a decode error, so a server
//! cannot make the client buffer without bound. The typed streams are thin mappings.

use futures::{Stream, StreamExt};

use crate::api::{Event, SessionEvent};
use crate::http::ClientError;

/// How much of one stream the client buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest line, in bytes (without its line ending).
    pub line: usize,
    /// The longest frame: its name plus its data, in bytes.
    pub frame: usize,
}

/// The limits of the node's and the providers' streams (a block's view is the largest
/// frame they send).
pub(crate) const LIMITS: Limits = Limits {
    line: 8 << 20,
    frame: 8 << 20,
};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Its `event:` name (`message` when it has none).
    pub kind: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

/// Bytes in, frames out: the pure core of [`frames`].
#[derive(Debug)]
struct FrameParser {
    limits: Limits,
    /// Bytes not yet read as lines.
    buf: Vec<u8>,
    /// How far `buf` is known to hold no line ending.
    scanned: usize,
    /// The frame being read.
    kind: Option<String>,
    data: Option<String>,
}

impl FrameParser {
    fn new(limits: Limits) -> FrameParser {
        FrameParser {
            limits,
            buf: Vec::new(),
            scanned: 0,
            kind: None,
            data: None,
        }
    }

    /// Appends bytes read from the response.
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame in what was pushed (`Ok(None)`: more bytes are needed);
    /// `Err` when a bound is passed (the stream cannot go on).
    fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        loop {
            let Some(nl) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.limits.line {
                    return Err(format!("a line longer than {} bytes", self.limits.line));
                }
                return Ok(None);
            };
            let end = self.scanned + nl;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            line.pop(); // '\n'
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.limits.line {
                return Err(format!("a line longer than {} bytes", self.limits.line));
            }
            if line.is_empty() {
                let kind = self.kind.take();
                match self.data.take() {
                    Some(data) if !data.is_empty() => {
                        let kind = kind.unwrap_or_else(|| "message".into());
                        return Ok(Some(Frame { kind, data }));
                    }
                    _ => continue, // a keep-alive comment, or a frame without data
                }
            }
            self.field(&String::from_utf8_lossy(&line))?;
        }
    }

    /// Reads one non-blank line into the frame being read.
    fn field(&mut self, line: &str) -> Result<(), String> {
        if let Some(k) = line.strip_prefix("event:") {
            self.kind = Some(k.trim().to_string());
        } else if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            let data = self.data.get_or_insert_with(String::new);
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d);
        }
        let size =
            self.kind.as_ref().map_or(0, String::len) + self.data.as_ref().map_or(0, String::len);
        if size > self.limits.frame {
            return Err(format!("an event longer than {} bytes", self.limits.frame));
        }
        Ok(())
    }
}

/// The frames of one server-sent-events response, in order; it ends after the response
/// does, or after the first error.
pub(crate) fn frames(
    url: String,
    resp: reqwest::Response,
    limits: Limits,
) -> impl Stream<Item = Result<Frame, ClientError>> + Send + 'static {
    futures::stream::unfold(
        (resp, FrameParser::new(limits), url, false),
        |(mut resp, mut parser, url, done)| async move {
            if done {
                return None;
            }
            loop {
                match parser.next_frame() {
                    Ok(Some(frame)) => return Some((Ok(frame), (resp, parser, url, false))),
                    Ok(None) => {}
                    Err(detail) => {
                        let err = ClientError::Decode {
                            url: url.clone(),
                            detail,
                        };
                        return Some((Err(err), (resp, parser, url, true)));
                    }
                }
                match resp.chunk().await {
                    Ok(Some(chunk)) => parser.push(&chunk),
                    Ok(None) => return None,
                    Err(source) => {
                        let err = ClientError::Transport {
                            url: url.clone(),
                            source,
                        };
                        return Some((Err(err), (resp, parser, url, true)));
                    }
                }
            }
        },
    )
}

/// [`frames`] parsed by `parse` (`Ok(None)`: a kind this version does not know,
/// skipped); `what` names the events in decode errors.
fn typed<T: Send + 'static>(
    url: String,
    resp: reqwest::Response,
    what: &'static str,
    parse: fn(&str, &str) -> Result<Option<T>, serde_json::Error>,
) -> impl Stream<Item = Result<T, ClientError>> + Send + 'static {
    frames(url.clone(), resp, LIMITS).filter_map(move |frame| {
        let item = match frame {
            Err(e) => Some(Err(e)),
            Ok(f) => match parse(&f.kind, &f.data) {
                Ok(e) => e.map(Ok),
                Err(e) => Some(Err(ClientError::Decode {
                    url: url.clone(),
                    detail: format!("{what} `{}`: {e}", f.kind),
                })),
            },
        };
        futures::future::ready(item)
    })
}

/// The events of the node's `/v1/events` response, in order (an event that does not
/// parse is reported and the stream goes on).
pub(crate) fn events(
    url: String,
    resp: reqwest::Response,
) -> impl Stream<Item = Result<Event, ClientError>> + Send + 'static {
    typed(url, resp, "event", Event::parse)
}

/// The events of a generation session's token stream (`GET /v1/sessions/{job}/tokens`),
/// ending after its `end` or `abort` event, or after the first error.
pub(crate) fn session_events(
    url: String,
    resp: reqwest::Response,
) -> impl Stream<Item = Result<SessionEvent, ClientError>> + Send + 'static {
    typed(url, resp, "session event", SessionEvent::parse).scan(false, |done, item| {
        if *done {
            return futures::future::ready(None);
        }
        *done = !matches!(item, Ok(SessionEvent::Token { .. }));
        futures::future::ready(Some(item))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(parser: &mut FrameParser) -> Vec<Frame> {
        std::iter::from_fn(|| parser.next_frame().unwrap()).collect()
    }

    #[test]
    fn frames_split_on_blank_lines_and_skip_comments() {
        let mut p = FrameParser::new(LIMITS);
        p.push(b": keep-alive\n\nevent: lagged\ndata: {\"missed\":3}\n\nevent: blo");
        let f = p.next_frame().unwrap().unwrap();
        assert_eq!(f.kind, "lagged");
        assert_eq!(
            Event::parse(&f.kind, &f.data).unwrap(),
            Some(Event::Lagged { missed: 3 })
        );
        assert_eq!(
            p.next_frame().unwrap(),
            None,
            "a partial frame waits for more"
        );
        p.push(b"ck\ndata: x\n\n");
        let f = p.next_frame().unwrap().unwrap();
        assert_eq!((f.kind.as_str(), f.data.as_str()), ("block", "x"));
        assert_eq!(Event::parse("mystery", "{}").unwrap(), None);
        assert!(Event::parse("block", "{}").is_err());
    }

    #[test]
    fn any_split_of_the_bytes_reads_the_same_frames() {
        let text = "event: token\r\ndata: {\"index\":0,\"token\":7}\r\n\r\n\
                    data: é1\ndata: 2\n\n: ping\n\nevent: end\ndata: ü\n\n";
        let mut whole = FrameParser::new(LIMITS);
        whole.push(text.as_bytes());
        let want = frames_of(&mut whole);
        assert_eq!(want.len(), 3);
        assert_eq!(want[1].kind, "message");
        assert_eq!(want[1].data, "é1\n2");
        assert_eq!(want[2].data, "ü");
        for cut in 0..text.len() {
            let mut p = FrameParser::new(LIMITS);
            p.push(&text.as_bytes()[..cut]);
            let mut got = frames_of(&mut p);
            p.push(&text.as_bytes()[cut..]);
            got.extend(frames_of(&mut p));
            assert_eq!(got, want, "split at {cut}");
        }
    }

    #[test]
    fn a_line_or_frame_past_its_bound_is_an_error() {
        let limits = Limits {
            line: 16,
            frame: 16,
        };
        let mut p = FrameParser::new(limits);
        p.push(b"data: 0123456789");
        assert_eq!(
            p.next_frame(),
            Ok(None),
            "16 bytes without an end: still a line"
        );
        p.push(b"x");
        assert!(p.next_frame().is_err(), "17 bytes without an end");

        let mut p = FrameParser::new(limits);
        p.push(b"data: 0123456789\ndata: 0123456789\n");
        assert!(
            p.next_frame().is_err(),
            "two lines of 10 bytes: 21 bytes of data"
        );

        let mut p = FrameParser::new(limits);
        p.push(b"data: 0123456789\n\ndata: 0123456789\n\n");
        assert_eq!(frames_of(&mut p).len(), 2, "the bound is per frame");
    }
}
