//! The field readers and command mapping on messages built in memory (the fuzzer reaches only
//! the codec; the gateway's own tests run real links).

use super::*;

/// A message of `mti` with `fields` set; `None` if the codec refuses a value.
fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(Mti::new(mti).expect("an MTI"));
    for (field, value) in fields {
        message
            .set(*field, value.as_bytes().to_vec())
            .expect("a value the codec takes");
    }
    message
}

#[test]
fn a_field_shorter_than_its_positions_is_a_format_error_not_a_panic() {
    assert_eq!(part("003000", 0..2, 3).expect("long enough"), "00");
    for (text, range, field) in [("0", 0..2, 22), ("", 0..2, 3), ("12345", 0..12, 95)] {
        let refusal = part(text, range, field).expect_err("too short");
        assert_eq!(refusal.code, code::FORMAT_ERROR);
        assert!(
            refusal.why.contains(&format!("DE {field}")),
            "{}",
            refusal.why
        );
    }
}

#[test]
fn de90_is_read_by_position_and_a_short_one_is_none() {
    // MTI, STAN, DE 7, acquirer (11, zero-padded), forwarding institution (11).
    let text = ["0100", "000123", "1206120000", "00000123456", "00000000000"].concat();
    let original = Original::read(&text).expect("42 digits");
    assert_eq!(original.mti.as_str(), "0100");
    assert_eq!(original.stan, "000123");
    assert_eq!(original.transmission, "1206120000");
    assert_eq!(original.acquirer, "123456");
    assert_eq!(original.forwarding, "");
    assert_eq!(Original::read(&text[..30]), None, "cut short");
}

#[test]
fn de43_gives_name_and_country_and_tolerates_what_is_missing() {
    let full = message("0100", &[(43, "CAFE DE FLORE          PARIS          FR")]);
    let merchant = merchant(&full, Mcc::new(5812).expect("mcc"));
    assert_eq!(merchant.name.as_deref(), Some("CAFE DE FLORE"));
    assert_eq!(
        merchant.country.map(|c| c.as_str().to_owned()),
        Some("FR".into())
    );
    let none = merchant_of(&message("0100", &[]));
    assert_eq!((none.name, none.country), (None, None));
}

fn merchant_of(message: &Message) -> Merchant {
    merchant(message, Mcc::new(5812).expect("mcc"))
}

#[test]
fn de54_cashback_and_de95_replacement_are_read_or_refused() {
    let with_cashback = message("0200", &[(54, "0040978C000000000500")]);
    assert_eq!(cashback(&with_cashback).expect("a type 40 block"), 500);
    let without = message("0200", &[(54, "0001978C000000010000")]);
    assert_eq!(
        cashback(&without).expect_err("no type 40").code,
        code::FORMAT_ERROR
    );
    let partial = message(
        "0400",
        &[(95, "000000000700000000000000000000000000000000")],
    );
    assert_eq!(
        replacement(&partial, Currency::from_alpha("EUR").expect("EUR")).expect("read"),
        Some(Money::new(700, Currency::from_alpha("EUR").expect("EUR")))
    );
}

#[test]
fn de22_gives_the_channel_and_a_wallet_tag_overrides_it() {
    let fields_of = |message: &Message| {
        let mut fields = Fields::read(message).expect("fields");
        let channel = channel(message, &fields).expect("a channel");
        fields.wallet = true;
        (channel, self::channel(message, &fields).expect("a channel"))
    };
    let base = [
        (2, "4000001234567899"),
        (3, "000000"),
        (4, "000000001000"),
        (11, "000001"),
        (37, "RRN000000001"),
        (49, "978"),
    ];
    let mut chip = base.to_vec();
    chip.push((22, "051"));
    assert_eq!(
        fields_of(&message("0100", &chip)),
        (Channel::Chip, Channel::Wallet)
    );
    let mut ecommerce = base.to_vec();
    ecommerce.push((22, "810"));
    assert_eq!(
        fields_of(&message("0100", &ecommerce)).0,
        Channel::Ecommerce
    );
    let mut unknown = base.to_vec();
    unknown.push((22, "990"));
    let message = message("0100", &unknown);
    let fields = Fields::read(&message).expect("fields");
    assert_eq!(
        channel(&message, &fields)
            .expect_err("not in the profile")
            .code,
        code::FORMAT_ERROR
    );
}
