//! A peer message's body: openraft's own request or response type in postcard, the encoding
//! the log stores entries in, so both ends mean exactly what openraft means.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem_proto::raft::Message;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Message, postcard::Error> {
    Ok(Message {
        body: postcard::to_allocvec(value)?,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(message: &Message) -> Result<T, postcard::Error> {
    postcard::from_bytes(&message.body)
}
