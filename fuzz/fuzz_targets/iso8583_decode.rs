//! Outside bytes as the gateway reads them: cut into frames, each frame decoded in both
//! bitmap encodings. Nothing may panic; whatever decodes must re-encode to a message that
//! decodes to the same thing (not always to the same bytes: a sender may set bit 1 with an
//! empty secondary bitmap, or write hex digits in lower case).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_iso8583::{BitmapEncoding, Framer, Message};

fuzz_target!(|data: &[u8]| {
    let framer = Framer::new(8192);
    let mut start = 0;
    while let Ok(Some(frame)) = framer.next(data, &mut start) {
        for encoding in [BitmapEncoding::Binary, BitmapEncoding::Hex] {
            match Message::decode(frame, encoding) {
                Ok(message) => {
                    let again = Message::decode(&message.encode(encoding), encoding);
                    assert_eq!(again.as_ref(), Ok(&message));
                }
                Err(malformed) => {
                    let _ = malformed.to_string();
                }
            }
        }
    }
});
