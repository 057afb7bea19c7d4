//! One request of the traffic ([`Op`]), whichever way it reaches the server: the targets
//! (`target.rs`) send it over gRPC or HTTP/JSON, the ISO 8583 links (`iso.rs`) translate it.

use tandem_proto::v1 as pb;

/// One request of the traffic.
#[derive(Debug, Clone)]
pub enum Op {
    Authorize(pb::AuthorizeRequest),
    Increment(pb::IncrementRequest),
    Reverse(pb::ReverseRequest),
    Clear(pb::PostingRequest),
    Advise(pb::PostingRequest),
    Refund(pb::PostingRequest),
    GetBalance(String),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Authorize(_) => "authorize",
            Op::Increment(_) => "increment",
            Op::Reverse(_) => "reverse",
            Op::Clear(_) => "clear",
            Op::Advise(_) => "advise",
            Op::Refund(_) => "refund",
            Op::GetBalance(_) => "get_balance",
        }
    }
}
