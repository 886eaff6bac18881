// Reading what the machine writes in OAuth 2.0 mode, for native tests: form bodies
// (`application/x-www-form-urlencoded`) and the base64url of client assertions. Included by
// `tests/common/mod.rs` and by the core's own unit tests (`src/core/oauth.rs`).

/// A form-encoded component, decoded (`+` is a space, `%XX` a byte); panics on bad input.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8")
}

/// The fields of a form body, decoded, in order.
pub fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// The first value of field `name` in a form body, decoded.
pub fn form_field(body: &str, name: &str) -> Option<String> {
    form(body).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Base64url without padding (RFC 4648 §5), as JWTs are written; panics on anything else.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut acc, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes() {
        let v = T
            .iter()
            .position(|&x| x == c)
            .unwrap_or_else(|| panic!("not base64url: {s}"));
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
