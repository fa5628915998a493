//! Reading `text/event-stream` into [`Event`]s.

use futures::Stream;

use crate::api::{Event, SessionEvent};
use crate::http::ClientError;

/// The events of one server-sent-events response, in order.
pub(crate) fn events(
    url: String,
    resp: reqwest::Response,
) -> impl Stream<Item = Result<Event, ClientError>> + Send + 'static {
    futures::stream::unfold(
        (resp, String::new(), url, false),
        |(mut resp, mut buf, url, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(frame) = next_frame(&mut buf) {
                    let Some((kind, data)) = parse_frame(&frame) else {
                        continue; // a keep-alive comment
                    };
                    match Event::parse(&kind, &data) {
                        Ok(Some(e)) => return Some((Ok(e), (resp, buf, url, false))),
                        Ok(None) => continue,
                        Err(e) => {
                            let err = ClientError::Decode {
                                url: url.clone(),
                                detail: format!("event `{kind}`: {e}"),
                            };
                            return Some((Err(err), (resp, buf, url, false)));
                        }
                    }
                }
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        if buf.contains('\r') {
                            buf = buf.replace("\r\n", "\n");
                        }
                    }
                    Ok(None) => return None,
                    Err(source) => {
                        let err = ClientError::Transport {
                            url: url.clone(),
                            source,
                        };
                        return Some((Err(err), (resp, buf, url, true)));
                    }
                }
            }
        },
    )
}

/// The events of a generation session's token stream (`GET /v1/sessions/{job}/tokens`),
/// ending after its `end` or `abort` event.
pub(crate) fn session_events(
    url: String,
    resp: reqwest::Response,
) -> impl Stream<Item = Result<SessionEvent, ClientError>> + Send + 'static {
    futures::stream::unfold(
        (resp, String::new(), url, false),
        |(mut resp, mut buf, url, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(frame) = next_frame(&mut buf) {
                    let Some((kind, data)) = parse_frame(&frame) else {
                        continue;
                    };
                    match SessionEvent::parse(&kind, &data) {
                        Ok(Some(e)) => {
                            let last = !matches!(e, SessionEvent::Token { .. });
                            return Some((Ok(e), (resp, buf, url, last)));
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            let err = ClientError::Decode {
                                url: url.clone(),
                                detail: format!("session event `{kind}`: {e}"),
                            };
                            return Some((Err(err), (resp, buf, url, true)));
                        }
                    }
                }
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        if buf.contains('\r') {
                            buf = buf.replace("\r\n", "\n");
                        }
                    }
                    Ok(None) => return None,
                    Err(source) => {
                        let err = ClientError::Transport {
                            url: url.clone(),
                            source,
                        };
                        return Some((Err(err), (resp, buf, url, true)));
                    }
                }
            }
        },
    )
}

/// Takes one blank-line-terminated frame off the front of `buf`.
fn next_frame(buf: &mut String) -> Option<String> {
    let end = buf.find("\n\n")?;
    Some(buf.drain(..end + 2).collect())
}

/// The frame's `event:` kind (default `message`) and its joined `data:` lines; `None`
/// when it carries no data.
fn parse_frame(frame: &str) -> Option<(String, String)> {
    let mut kind = "message".to_string();
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    (!data.is_empty()).then_some((kind, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_skip_comments() {
        let mut buf =
            ": keep-alive\n\nevent: lagged\ndata: {\"missed\":3}\n\nevent: blo".to_string();
        let f = next_frame(&mut buf).unwrap();
        assert_eq!(parse_frame(&f), None);
        let f = next_frame(&mut buf).unwrap();
        let (kind, data) = parse_frame(&f).unwrap();
        assert_eq!(kind, "lagged");
        assert_eq!(
            Event::parse(&kind, &data).unwrap(),
            Some(Event::Lagged { missed: 3 })
        );
        assert_eq!(next_frame(&mut buf), None, "a partial frame waits for more");
        assert_eq!(Event::parse("mystery", "{}").unwrap(), None);
        assert!(Event::parse("block", "{}").is_err());
    }
}
