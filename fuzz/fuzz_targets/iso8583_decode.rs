//! Outside bytes as the gateway reads them: cut into frames, each frame decoded in both
//! bitmap encodings. Nothing may panic; whatever decodes must re-encode to the same bytes.
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
                    let again = message.encode(encoding);
                    assert_eq!(again.to_ascii_uppercase(), frame.to_ascii_uppercase());
                }
                Err(malformed) => {
                    let _ = malformed.to_string();
                }
            }
        }
    }
});
