"""Drives a running Tandem ISO 8583 gateway with pyiso8583, an implementation we did not write.

Usage: iso8583_interop.py HOST:PORT JOINT_PAN KID_PAN

The joint card's account holds 100.00 EUR; the kid's card may not buy alcohol (MCC 5921).
Exits non-zero, naming the step, on the first answer that is not what the profile says.
"""

import socket
import struct
import sys

import iso8583
from iso8583.specs import default as SPEC  # ASCII fields, binary bitmaps: Tandem's default

EUR = "978"


class Link:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.buffer = b""

    def send(self, fields):
        raw, _ = iso8583.encode(dict(fields), SPEC)
        self.sock.sendall(struct.pack(">H", len(raw)) + bytes(raw))

    def receive(self):
        while True:
            if len(self.buffer) >= 2:
                (length,) = struct.unpack(">H", self.buffer[:2])
                if len(self.buffer) >= 2 + length:
                    body, self.buffer = self.buffer[2 : 2 + length], self.buffer[2 + length :]
                    decoded, _ = iso8583.decode(body, SPEC)
                    return decoded
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("the gateway closed the link")
            self.buffer += chunk

    def ask(self, fields):
        self.send(fields)
        return self.receive()


def authorization(pan, stan, amount_minor, mcc="5411", mti="0100"):
    return {
        "t": mti,
        "2": pan,
        "3": "000000",
        "4": f"{amount_minor:012d}",
        "7": "1129120000",
        "11": stan,
        "12": "120000",
        "13": "1129",
        "18": mcc,
        "22": "071",
        "32": "4321",
        "37": f"PY{stan:0>10}",
        "41": "PYTERM01",
        "42": "PYMERCHANT00001",
        "43": f"{'PY SHOP':<23}{'LISBON':<13}  PT",
        "49": EUR,
    }


def original_data(original):
    return f"{original['t']}{original['11']}{original['7']}{original['32']:0>11}{'':0>11}"


def additional(answer, amount_type):
    blocks = answer.get("54", "")
    for i in range(0, len(blocks), 20):
        block = blocks[i : i + 20]
        if block[2:4] == amount_type:
            sign = -1 if block[7] == "D" else 1
            return block[4:7], sign * int(block[8:20])
    return None


def expect(step, answer, **fields):
    for field, want in fields.items():
        got = answer.get(field.lstrip("f"), None) if field != "t" else answer["t"]
        if got != want:
            raise SystemExit(f"{step}: DE {field} is {got!r}, expected {want!r} (answer {answer})")
    print(f"ok  {step}")


def main():
    address, joint_pan, kid_pan = sys.argv[1:4]
    link = Link(address)

    expect("echo", link.ask({"t": "0800", "7": "1129120000", "11": "900001", "70": "301"}),
           t="0810", f39="00", f11="900001")

    first = authorization(joint_pan, "100001", 3000)
    approved = link.ask(first)
    expect("approve", approved, t="0110", f39="00", f11="100001", f4="000000003000")
    if len(approved.get("38", "")) != 6 or additional(approved, "02") != (EUR, 7000):
        raise SystemExit(f"approve: DE 38/54 wrong: {approved}")

    repeat = link.ask(dict(first, t="0101"))
    expect("repeat returns the first answer", repeat, t="0110", f39="00", f38=approved["38"],
           f54=approved["54"])

    expect("decline 51", link.ask(authorization(joint_pan, "100002", 50000)), f39="51")
    expect("decline 57", link.ask(authorization(kid_pan, "100003", 500, mcc="5921")), f39="57")

    partial = link.ask(dict(authorization(joint_pan, "100004", 9000), **{"48": "PA011"}))
    expect("partial approval", partial, f39="10", f4="000000007000")
    if additional(partial, "57") != (EUR, 9000):
        raise SystemExit(f"partial approval: DE 54 57 wrong: {partial}")

    reversal = dict(first, t="0400", **{"11": "100005", "90": original_data(first),
                                        "95": f"{1000:012d}" + "0" * 30})
    expect("partial reversal via DE 95", link.ask(reversal), t="0410", f39="00")

    never_seen = authorization(joint_pan, "100006", 200)
    advice = dict(never_seen, t="0420", **{"11": "100007", "90": original_data(never_seen)})
    expect("unmatched reversal advice", link.ask(advice), t="0430", f39="00")

    # DE 90 matching, both forms: a new RRN with DE 90 naming the original, and the same RRN
    # without DE 90. Each step checks the available balance a matched message leaves (an
    # unmatched one leaves the hold, opens a second lifecycle, or declines the increment).
    def available(stan):
        answer = link.ask(dict(authorization(joint_pan, stan, 0), **{"3": "310000"}))
        return additional(answer, "02")[1]

    start = available("200000")

    def pointing(original, mti, stan, amount_minor, by_de90, **extra):
        message = dict(original, t=mti, **{"11": stan, "4": f"{amount_minor:012d}"}, **extra)
        if by_de90:
            message["37"] = f"NEWRRN{stan}"
            message["90"] = original_data(original)
        return message

    for n, by_de90 in enumerate([True, False]):
        form = "new RRN + DE 90" if by_de90 else "same RRN, no DE 90"
        base = 200100 + n * 100
        held = authorization(joint_pan, f"{base + 1}", 500)
        expect(f"original for a reversal ({form})", link.ask(held), f39="00")
        expect(f"reversal ({form})", link.ask(pointing(held, "0400", f"{base + 2}", 500, by_de90)),
               t="0410", f39="00")
        if available(f"{base + 3}") != start:
            raise SystemExit(f"reversal ({form}): the hold was not released")

        adjusted = authorization(joint_pan, f"{base + 11}", 400)
        expect(f"original for an advice ({form})", link.ask(adjusted), f39="00")
        advice = pointing(adjusted, "0120", f"{base + 12}", 300, by_de90, **{"39": "00"})
        expect(f"stand-in advice for less ({form})", link.ask(advice), t="0130", f39="00")
        start -= 300
        if available(f"{base + 13}") != start:
            raise SystemExit(f"advice ({form}): the hold is not the advised 3.00")

        grown = authorization(joint_pan, f"{base + 21}", 200)
        expect(f"original for an increment ({form})", link.ask(grown), f39="00")
        increment = pointing(grown, "0100", f"{base + 22}", 100, by_de90, **{"48": "IA011"})
        expect(f"incremental authorization ({form})", link.ask(increment), t="0110", f39="00")
        start -= 300
        if available(f"{base + 23}") != start:
            raise SystemExit(f"increment ({form}): the hold is not 2.00 + 1.00")

    completed = authorization(joint_pan, "200301", 200)
    expect("original for a completion (new RRN + DE 90)", link.ask(completed), f39="00")
    completion = pointing(completed, "0220", "200302", 200, True)
    expect("completion (new RRN + DE 90)", link.ask(completion), t="0230", f39="00")
    start -= 200
    if available("200303") != start:
        raise SystemExit("completion (new RRN + DE 90): posted twice or not cleared")

    stand_in = dict(authorization(joint_pan, "100008", 60000), t="0120", **{"39": "00"})
    expect("stand-in advice that overdraws", link.ask(stand_in), t="0130", f39="00")

    financial = authorization(kid_pan, "100009", 700, mti="0200")
    expect("0200 financial request", link.ask(financial), t="0210", f39="00")

    # Balance inquiry after all of it: the joint account is overdrawn by the advice.
    inquiry = dict(authorization(joint_pan, "100010", 0), **{"3": "310000"})
    answer = link.ask(inquiry)
    expect("balance inquiry", answer, f39="00")
    currency, available = additional(answer, "02")
    if currency != EUR or available >= 0:
        raise SystemExit(f"balance inquiry: expected an overdrawn EUR balance, got {answer}")
    print("all interop steps passed")


if __name__ == "__main__":
    main()
