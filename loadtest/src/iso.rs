//! The ISO 8583 side of the tester: links to the gateway (many requests in flight on each,
//! answers matched by STAN), and the translation of the tester's operations into the
//! messages a network sends (0100, 0200, 0120, 0220, 0400, incremental 0100) and of the
//! answers back into the shape the run and the audit keep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tandem_iso8583::{BitmapEncoding, Framer, Message, Mti, frame_into};
use tandem_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::op::Op;
use crate::pending::Pending;

type Waiters = Pending<u32, Message>;

/// The next STAN, shared by every link: the links stand for one acquirer, whose STANs are
/// unique across its connections (a network's are, per acquirer and day). The gateway finds
/// an original through DE 90 (MTI, STAN, DE 7, acquirer), so two links that each counted
/// from zero sent originals with the same DE 90 key, and the second was matched to the
/// first (94).
static NEXT_STAN: AtomicU32 = AtomicU32::new(0);

/// One TCP link to the gateway. Requests carry a STAN unique among those in flight on it.
pub struct Link {
    outbound: mpsc::Sender<Message>,
    waiters: Waiters,
    /// Set when the link stops reading: the gateway closed it or the node is gone.
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl crate::reopen::Closable for Link {
    fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.outbound.is_closed()
    }
}

impl Link {
    pub async fn connect(address: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to iso8583://{address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let (outbound, mut queue) = mpsc::channel::<Message>(65_536);
        let waiters = Waiters::default();
        // Writer: many requests per write when they queue up.
        tokio::spawn(async move {
            let mut bytes = Vec::with_capacity(64 * 1024);
            while let Some(first) = queue.recv().await {
                bytes.clear();
                frame_into(&mut bytes, &first.encode(BitmapEncoding::Binary));
                while bytes.len() < 64 * 1024 {
                    match queue.try_recv() {
                        Ok(next) => frame_into(&mut bytes, &next.encode(BitmapEncoding::Binary)),
                        Err(_) => break,
                    }
                }
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let reader = waiters.clone();
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ending = ended.clone();
        tokio::spawn(async move {
            let framer = Framer::new(65_535);
            let mut buffer = Vec::with_capacity(64 * 1024);
            loop {
                buffer.reserve(16 * 1024);
                match read.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let mut start = 0;
                while let Ok(Some(body)) = framer.next(&buffer, &mut start) {
                    let Ok(answer) = Message::decode(body, BitmapEncoding::Binary) else {
                        continue;
                    };
                    let Some(stan) = answer.text(11).and_then(|s| s.parse::<u32>().ok()) else {
                        continue;
                    };
                    reader.answer(&stan, answer);
                }
                buffer.drain(..start);
            }
            // The link closed: everyone still waiting learns it (their senders drop).
            ending.store(true, Ordering::Relaxed);
            reader.close(|| None);
        });
        Ok(Self {
            outbound,
            waiters,
            ended,
        })
    }

    /// Sends `request` with a fresh STAN and waits for its answer.
    pub async fn ask(&self, mut request: Message) -> Result<Message, String> {
        let stan = NEXT_STAN.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        request
            .set_number(11, u64::from(stan))
            .map_err(|e| e.to_string())?;
        let receiver = self.waiters.wait_for(stan);
        self.outbound
            .send(request)
            .await
            .map_err(|_| "the ISO 8583 link closed".to_string())?;
        receiver
            .await
            .map_err(|_| "the ISO 8583 link closed before answering".to_string())
    }
}

/// What a lifecycle's later messages need of its first one.
#[derive(Debug, Clone)]
pub struct Original {
    pan: String,
    rrn: String,
    stan: String,
    currency: String,
}

/// Turns operations into messages, keeping each lifecycle's original for its follow-ups.
pub struct Translator {
    /// card id → PAN, learnt as the run issues cards.
    pans: Mutex<HashMap<String, String>>,
    originals: Mutex<HashMap<String, Original>>,
    rrn: AtomicU64,
    acquirer: String,
}

/// ISO 4217 numeric codes of the currencies runs use.
fn numeric(currency: &str) -> Result<&'static str, String> {
    Ok(match currency {
        "EUR" => "978",
        "GBP" => "826",
        "USD" => "840",
        "JPY" => "392",
        "CHF" => "756",
        "SEK" => "752",
        other => return Err(format!("no ISO 4217 numeric code known for {other}")),
    })
}

fn entry_mode(channel: &str) -> &'static str {
    match channel {
        "ecommerce" => "810",
        "contactless" => "071",
        "magstripe" => "901",
        _ => "051",
    }
}

fn set(message: &mut Message, field: u8, value: &str) -> Result<(), String> {
    message
        .set(field, value.as_bytes())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Translator {
    /// `run` makes the run's RRNs and acquirer id its own.
    pub fn new(run: u64) -> Self {
        Self {
            pans: Mutex::new(HashMap::new()),
            originals: Mutex::new(HashMap::new()),
            rrn: AtomicU64::new(0),
            acquirer: format!("{}", 10_000 + run % 90_000),
        }
    }

    pub fn learn_pan(&self, card: &str, pan: &str) {
        self.pans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(card.to_owned(), pan.to_owned());
    }

    fn pan(&self, card: &str) -> Result<String, String> {
        self.pans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(card)
            .cloned()
            .ok_or_else(|| format!("card {card} has no PAN"))
    }

    fn next_rrn(&self) -> String {
        format!("{:012}", self.rrn.fetch_add(1, Ordering::Relaxed))
    }

    #[allow(clippy::too_many_arguments)]
    fn spend_message(
        &self,
        mti: &str,
        pan: &str,
        rrn: &str,
        amount_minor: i64,
        currency: &str,
        mcc: &str,
        channel: &str,
        merchant_country: &str,
    ) -> Result<Message, String> {
        let mut m = Message::new(Mti::new(mti).ok_or("MTI")?);
        set(&mut m, 2, pan)?;
        set(&mut m, 3, "000000")?;
        m.set_number(4, amount_minor.unsigned_abs())
            .map_err(|e| e.to_string())?;
        set(&mut m, 7, "1129120000")?;
        set(&mut m, 18, if mcc.is_empty() { "5999" } else { mcc })?;
        set(&mut m, 22, entry_mode(channel))?;
        set(&mut m, 32, &self.acquirer)?;
        set(&mut m, 37, rrn)?;
        set(&mut m, 41, "LOADTEST")?;
        set(&mut m, 42, "LOADTESTMERCH01")?;
        let country = if merchant_country.len() == 2 {
            merchant_country
        } else {
            "GB"
        };
        set(
            &mut m,
            43,
            &format!("{:<23}{:<13}  {country}", "LOAD TEST MERCHANT", "LONDON"),
        )?;
        set(&mut m, 49, numeric(currency)?)?;
        if channel == "wallet" {
            set(&mut m, 48, "WT011")?;
        }
        Ok(m)
    }

    /// A message for a posting (clearing, advice, refund) on `pan` under `rrn`.
    fn posting(
        &self,
        mti: &str,
        pan: &str,
        rrn: &str,
        r: &pb::PostingRequest,
    ) -> Result<Message, String> {
        self.spend_message(
            mti,
            pan,
            rrn,
            r.amount_minor,
            &r.currency,
            &r.mcc,
            &r.channel,
            &r.merchant_country,
        )
    }

    /// DE 90 for a lifecycle's original (MTI 0100, its STAN, DE 7, acquirer).
    fn original_data(&self, original: &Original) -> String {
        format!(
            "0100{}1129120000{:0>11}{:011}",
            original.stan, self.acquirer, 0
        )
    }

    fn original(&self, authorization: &str) -> Result<Original, String> {
        self.originals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(authorization)
            .cloned()
            .ok_or_else(|| format!("no approved original for {authorization}"))
    }

    /// The request message for `op` (balance reads do not go over ISO 8583).
    pub fn request(&self, op: &Op) -> Result<(Message, Option<Original>), String> {
        match op {
            Op::Authorize(r) => {
                let pan = self.pan(&r.card_id)?;
                let rrn = self.next_rrn();
                let mti = if r.single_message { "0200" } else { "0100" };
                let mut m = self.spend_message(
                    mti,
                    &pan,
                    &rrn,
                    r.amount_minor,
                    &r.currency,
                    &r.mcc,
                    &r.channel,
                    &r.merchant_country,
                )?;
                if r.partial_allowed {
                    let tags = format!("{}PA011", m.text(48).unwrap_or(""));
                    set(&mut m, 48, &tags)?;
                }
                let original = Original {
                    pan,
                    rrn,
                    stan: String::new(),
                    currency: r.currency.clone(),
                };
                Ok((m, Some(original)))
            }
            Op::Increment(r) => {
                let original = self.original(&r.authorization_id)?;
                let mut m = self.spend_message(
                    "0100",
                    &original.pan,
                    &original.rrn,
                    r.amount_minor,
                    &r.currency,
                    "",
                    "chip",
                    "",
                )?;
                set(&mut m, 48, "IA011")?;
                set(&mut m, 90, &self.original_data(&original))?;
                Ok((m, None))
            }
            Op::Reverse(r) => {
                let original = self.original(&r.authorization_id)?;
                let mut m = self.spend_message(
                    "0400",
                    &original.pan,
                    &original.rrn,
                    0,
                    &original.currency,
                    "",
                    "chip",
                    "",
                )?;
                set(&mut m, 90, &self.original_data(&original))?;
                if let Some(amount) = r.amount_minor.filter(|a| *a > 0) {
                    set(&mut m, 95, &format!("{amount:012}{:030}", 0))?;
                }
                Ok((m, None))
            }
            Op::Clear(r) => {
                let original = self.original(&r.authorization_id)?;
                let mut m = self.posting("0220", &original.pan, &original.rrn, r)?;
                set(&mut m, 90, &self.original_data(&original))?;
                Ok((m, None))
            }
            Op::Advise(r) => {
                let mut m = self.posting("0120", &self.pan(&r.card_id)?, &self.next_rrn(), r)?;
                set(&mut m, 39, if r.network_approved { "00" } else { "05" })?;
                Ok((m, None))
            }
            Op::Refund(r) => {
                let mut m = self.posting("0200", &self.pan(&r.card_id)?, &self.next_rrn(), r)?;
                set(&mut m, 3, "200000")?;
                Ok((m, None))
            }
            Op::GetBalance(_) => Err("balances are read over the admin API".into()),
        }
    }

    /// The answer in the tester's shape; remembers an approved lifecycle's original.
    pub fn answer(&self, original: Option<Original>, answer: &Message) -> pb::AuthorizeResponse {
        let code = answer.text(39).unwrap_or("").to_owned();
        let authorization_id = answer
            .text(48)
            .and_then(|tags| tags.strip_prefix("AI"))
            .map(|rest| rest.get(2..).unwrap_or("").to_owned())
            .unwrap_or_default();
        let approved = code == "00" || code == "10";
        let amount = |m: &Message| m.text(4).and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
        if approved && let Some(mut original) = original {
            original.stan = answer.text(11).unwrap_or("000000").to_owned();
            self.originals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(authorization_id.clone(), original);
        }
        pb::AuthorizeResponse {
            authorization_id,
            status: match code.as_str() {
                "00" => "approved",
                "10" => "partially_approved",
                _ => "declined",
            }
            .to_owned(),
            approved_amount_minor: if approved { amount(answer) } else { 0 },
            response_code: code,
            approval_code: answer.text(38).unwrap_or("").to_owned(),
            ..Default::default()
        }
    }
}
