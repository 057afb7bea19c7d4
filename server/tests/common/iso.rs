//! A plain ISO 8583 network peer for tests: a TCP connection that sends framed messages and
//! reads framed answers, built on the codec crate (the interop test uses pyiso8583 instead).

use super::Node;
use serde_json::json;
use std::time::Duration;
use tandem_iso8583::{BitmapEncoding, Framer, Message, Mti, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const EUR: &str = "978";

pub const PAN: &str = "4000001234567899";
pub const KID_PAN: &str = "4000009876543210";

/// A joint account "j" with one card on PAN, 100.00 EUR; a kid account "k" whose card may not
/// buy alcohol (MCC 5921) nor spend more than 20.00 a day.
pub async fn setup(node: &Node) {
    node.account("j", "joint", &[("ana", "owner")], Some(("EUR", 10_000)))
        .await;
    node.admin(
        "POST",
        "/v1/accounts/j/cards",
        json!({"card_id": "j-plastic", "member_id": "ana", "pan": PAN}),
    )
    .await;
    node.account(
        "k",
        "kid",
        &[("mum", "owner"), ("kit", "child")],
        Some(("EUR", 50_00)),
    )
    .await;
    node.admin(
        "POST",
        "/v1/accounts/k/cards",
        json!({"card_id": "k-plastic", "member_id": "kit", "pan": KID_PAN}),
    )
    .await;
    node.admin(
        "PUT",
        "/v1/accounts/k/members/kit/controls",
        json!({"blocked_mcc": ["5921"], "limits": {"daily": {"currency": "EUR", "amount_minor": 20_00}}}),
    )
    .await;
}

pub struct Link {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    pub bitmap: BitmapEncoding,
}

impl Link {
    pub async fn connect(address: &str) -> Link {
        Link {
            stream: TcpStream::connect(address)
                .await
                .expect("connect to the gateway"),
            buffer: Vec::new(),
            bitmap: BitmapEncoding::Binary,
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.send_raw(&frame(&message.encode(self.bitmap))).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next answer; `None` when the gateway closed the link.
    pub async fn receive(&mut self) -> Option<Message> {
        let framer = Framer::new(65_535);
        loop {
            let mut start = 0;
            if let Some(body) = framer
                .next(&self.buffer, &mut start)
                .expect("gateway framing")
            {
                let message = Message::decode(body, self.bitmap).expect("gateway answers decode");
                self.buffer.drain(..start);
                return Some(message);
            }
            let read = tokio::time::timeout(
                Duration::from_secs(60),
                self.stream.read_buf(&mut self.buffer),
            )
            .await
            .expect("the gateway answers within a minute");
            if read.expect("read") == 0 {
                return None;
            }
        }
    }

    pub async fn ask(&mut self, message: &Message) -> Message {
        self.send(message).await;
        self.receive().await.expect("an answer")
    }
}

/// A message with the given fields set, as text.
pub fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut m = Message::new(Mti::new(mti).expect("MTI"));
    for (field, value) in fields {
        m.set(*field, value.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    m
}

/// DE 43: name (23), city (13), region (2), country (2).
pub fn merchant_location(name: &str, country: &str) -> String {
    format!("{name:<23}{:<13}  {country}", "CITY")
}

/// An authorization request (0100) as an acquirer sends it.
pub fn authorization(pan: &str, stan: &str, rrn: &str, amount_minor: u64) -> Message {
    let amount = format!("{amount_minor:012}");
    let location = merchant_location("CORNER SHOP", "DE");
    message(
        "0100",
        &[
            (2, pan),
            (3, "000000"),
            (4, &amount),
            (7, "1129101500"),
            (11, stan),
            (12, "101500"),
            (13, "1129"),
            (18, "5411"),
            (22, "051"),
            (32, "12345"),
            (37, rrn),
            (41, "TERM0001"),
            (42, "MERCHANT0000001"),
            (43, &location),
            (49, EUR),
        ],
    )
}

/// `message` with fields replaced or added.
pub fn with(mut message: Message, fields: &[(u8, &str)]) -> Message {
    for (field, value) in fields {
        message
            .set(*field, value.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    message
}

/// `message` as another MTI.
pub fn as_mti(message: &Message, mti: &str) -> Message {
    let mut copy = Message::new(Mti::new(mti).expect("MTI"));
    for (field, value) in message.fields() {
        copy.set(field, value).expect("valid field");
    }
    copy
}

/// DE 90 pointing at `original` (MTI, STAN, DE 7, acquirer).
pub fn original_data(original: &Message) -> String {
    format!(
        "{}{}{}{:0>11}{:0>11}",
        original.mti,
        original.text(11).unwrap_or("000000"),
        original.text(7).unwrap_or("0000000000"),
        original.text(32).unwrap_or(""),
        ""
    )
}

pub fn text(message: &Message, field: u8) -> &str {
    message.text(field).unwrap_or("")
}
