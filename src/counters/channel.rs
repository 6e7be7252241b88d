//! The messages of a campaign's pub/sub channel, in one place: what the scripts publish
//! (their Lua side is written here, into the scripts' prelude), what Rust publishes, and
//! how the live subscriber reads them.

/// One message on a campaign's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A stream's totals changed.
    Totals { stream: &'a str },
    /// An event frame of a stream, with its seq, to pass on as it is.
    Event { stream: &'a str, frame: &'a str },
    /// A frame of a stream shown once, never logged nor replayed (a test alert).
    Alert { stream: &'a str, frame: &'a str },
}

const TOTALS: &str = "T";
const EVENT: &str = "E";
const ALERT: &str = "A";

impl<'a> Message<'a> {
    pub fn encode(&self) -> String {
        match self {
            Message::Totals { stream } => format!("{TOTALS} {stream}"),
            Message::Event { stream, frame } => format!("{EVENT} {stream} {frame}"),
            Message::Alert { stream, frame } => format!("{ALERT} {stream} {frame}"),
        }
    }

    pub fn decode(payload: &'a str) -> Option<Message<'a>> {
        let mut parts = payload.splitn(3, ' ');
        match (parts.next()?, parts.next()?, parts.next()) {
            (TOTALS, stream, None) => Some(Message::Totals { stream }),
            (EVENT, stream, Some(frame)) => Some(Message::Event { stream, frame }),
            (ALERT, stream, Some(frame)) => Some(Message::Alert { stream, frame }),
            _ => None,
        }
    }
}

/// The scripts' way to publish: `announce_totals(channel, stream)`,
/// `announce_event(channel, stream, frame)` and `announce_alert(channel, stream, frame)`.
pub(super) fn lua() -> String {
    let framed = |name: &str, prefix: &str| {
        format!(
            "local function {name}(channel, stream, frame)\n  \
               redis.call('PUBLISH', channel, '{prefix} ' .. stream .. ' ' .. frame)\n\
             end\n"
        )
    };
    format!(
        "local function announce_totals(channel, stream)\n  \
           redis.call('PUBLISH', channel, '{TOTALS} ' .. stream)\n\
         end\n{}{}",
        framed("announce_event", EVENT),
        framed("announce_alert", ALERT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written() {
        let frame = r#"{"type":"gift","seq":3,"message":"a b c"}"#;
        for m in [
            Message::Totals { stream: "live-01" },
            Message::Event {
                stream: "live-01",
                frame,
            },
            Message::Alert {
                stream: "live-01",
                frame,
            },
        ] {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::decode("T"), None);
        assert_eq!(Message::decode("E live-01"), None);
        assert_eq!(Message::decode("X live-01 {}"), None);
    }

    #[test]
    fn the_lua_side_uses_the_same_prefixes() {
        let lua = lua();
        assert!(lua.contains("'T ' .. stream") && lua.contains("'E ' .. stream"));
        assert!(lua.contains("'A ' .. stream"));
    }
}
