//! Interoperability with independent implementations: the `openssl` command line (seed format)
//! and Node.js's `crypto` module (the seed format exactly as the Node.js `EncryptionService` used
//! it, and the v2 format as documented). A missing tool fails the test: skipping would let the
//! compatibility promise go unchecked without anyone noticing.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use agentidp_core::crypto::{
    decrypt, encrypt, encrypt_cbc_with_iv, encrypt_gcm_with_nonce, EncryptionKey, Format,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const KEY_HEX: &str = "8c1f0b5e2d7a4c6e9f3b1a0d5e7c2b4a6d8f0e1c3b5a79684f2e1d0c9b8a7f6e";

fn key() -> EncryptionKey {
    EncryptionKey::from_hex(KEY_HEX).expect("valid key")
}

/// Plaintexts around the block boundaries, non-ASCII text, and one long enough to leave the
/// stack buffers.
fn plaintexts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        "a",
        "fifteen bytes!!",
        "sixteen bytes!!!",
        "seventeen bytes!!",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    texts.push("pässwörd — 密码 — 🔑".to_owned());
    texts.push("x".repeat(1500));
    texts
}

fn run(program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run `{program}` ({err}): the interop tests need it on PATH; install it \
                 rather than skipping these tests"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write to child's stdin");
    let output = child.wait_with_output().expect("child runs to completion");
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn openssl_cbc(direction: &str, iv: &[u8], input: &[u8]) -> Vec<u8> {
    let iv_hex = hex::encode(iv);
    run(
        "openssl",
        &[
            "enc",
            direction,
            "-aes-256-cbc",
            "-K",
            KEY_HEX,
            "-iv",
            &iv_hex,
            "-base64",
            "-A",
        ],
        input,
    )
    .stdout
}

#[test]
fn openssl_decrypts_seed_values_made_here() {
    let key = key();
    for plaintext in plaintexts() {
        let value = encrypt(&plaintext, &key, Format::Cbc, "").expect("encrypts");
        let (iv_b64, ciphertext_b64) = value.split_once(':').expect("seed format has a colon");
        let iv = STANDARD.decode(iv_b64).expect("IV is base64");
        let decrypted = openssl_cbc("-d", &iv, ciphertext_b64.as_bytes());
        assert_eq!(
            String::from_utf8(decrypted).expect("UTF-8"),
            plaintext,
            "value {value}"
        );
    }
}

#[test]
fn seed_values_made_by_openssl_decrypt_here_and_match_byte_for_byte() {
    let key = key();
    let iv: [u8; 16] = *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff";
    for plaintext in plaintexts() {
        let ciphertext_b64 = openssl_cbc("-e", &iv, plaintext.as_bytes());
        let ciphertext_b64 = String::from_utf8(ciphertext_b64).expect("base64 is ASCII");
        let value = format!("{}:{}", STANDARD.encode(iv), ciphertext_b64.trim_end());
        assert_eq!(value, encrypt_cbc_with_iv(&plaintext, &key, &iv));
        assert_eq!(
            decrypt(&value, &key, "").map(|d| d.into_text().into_owned()),
            Ok(plaintext)
        );
    }
}

/// The seed service's scheme, as Node code: `aes-256-cbc`, random 16-byte IV, `iv:ciphertext`
/// in base64; followed by the v2 scheme as the module documentation specifies it. Reads
/// `{op, ...}` lines of JSON on stdin and writes one result per line.
const NODE_SCRIPT: &str = r#"
const crypto = require('crypto');
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
const key = Buffer.from(process.argv[1], 'hex');
const keyId = crypto.createHash('sha256').update('agentidp-key-id').update(key).digest('hex').slice(0, 8);
const out = lines.map((line) => {
  const req = JSON.parse(line);
  switch (req.op) {
    case 'cbc-encrypt': {
      const iv = crypto.randomBytes(16);
      const cipher = crypto.createCipheriv('aes-256-cbc', key, iv);
      let encrypted = cipher.update(req.text, 'utf8', 'base64');
      encrypted += cipher.final('base64');
      return iv.toString('base64') + ':' + encrypted;
    }
    case 'cbc-decrypt': {
      const [ivB64, encrypted] = req.value.split(':');
      const decipher = crypto.createDecipheriv('aes-256-cbc', key, Buffer.from(ivB64, 'base64'));
      let decrypted = decipher.update(encrypted, 'base64', 'utf8');
      decrypted += decipher.final('utf8');
      return decrypted;
    }
    case 'v2-encrypt': {
      const nonce = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from('agentidp:v2:' + keyId + ':' + req.context, 'utf8'));
      const sealed = Buffer.concat([cipher.update(req.text, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return 'agentidp:v2:' + keyId + ':' + nonce.toString('base64') + ':' + sealed.toString('base64');
    }
    case 'v2-decrypt': {
      const [, , id, nonceB64, sealedB64] = req.value.split(':');
      if (id !== keyId) throw new Error('key id ' + id + ' is not ' + keyId);
      const sealed = Buffer.from(sealedB64, 'base64');
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(nonceB64, 'base64'));
      decipher.setAAD(Buffer.from('agentidp:v2:' + id + ':' + req.context, 'utf8'));
      decipher.setAuthTag(sealed.subarray(sealed.length - 16));
      return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]).toString('utf8');
    }
  }
  throw new Error('unknown op ' + req.op);
});
process.stdout.write(out.map((s) => JSON.stringify(s)).join('\n') + '\n');
"#;

/// Runs one batch of requests through `NODE_SCRIPT`.
fn node(requests: &[String]) -> Vec<String> {
    let input = requests.join("\n") + "\n";
    let output = run("node", &["-e", NODE_SCRIPT, KEY_HEX], input.as_bytes());
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let results: Vec<String> = stdout
        .lines()
        .map(|line| json_string(line).unwrap_or_else(|| panic!("not a JSON string: {line}")))
        .collect();
    assert_eq!(results.len(), requests.len());
    results
}

fn request(op: &str, field: &str, value: &str, context: &str) -> String {
    format!(
        r#"{{"op":"{op}","{field}":{},"context":{}}}"#,
        json_quote(value),
        json_quote(context)
    )
}

/// JSON string quoting, enough for the test's own strings.
fn json_quote(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if u32::from(c) < 0x20 => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Parses the output of `JSON.stringify` on a string, which escapes only `"`, `\` and control
/// characters.
fn json_string(line: &str) -> Option<String> {
    let inner = line.strip_prefix('"')?.strip_suffix('"')?;
    let mut text = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next()? {
            'u' => {
                let code: String = chars.by_ref().take(4).collect();
                text.push(char::from_u32(u32::from_str_radix(&code, 16).ok()?)?);
            }
            'n' => text.push('\n'),
            't' => text.push('\t'),
            'r' => text.push('\r'),
            'b' => text.push('\u{8}'),
            'f' => text.push('\u{c}'),
            escaped => text.push(escaped),
        }
    }
    Some(text)
}

const CONTEXT: &str = "public.users.email";

#[test]
fn seed_values_made_by_the_node_service_decrypt_here() {
    let key = key();
    let texts = plaintexts();
    let requests: Vec<String> = texts
        .iter()
        .map(|text| request("cbc-encrypt", "text", text, ""))
        .collect();
    for (text, value) in texts.iter().zip(node(&requests)) {
        assert_eq!(
            decrypt(&value, &key, "").map(|d| d.into_text().into_owned()),
            Ok(text.clone()),
            "value {value}"
        );
    }
}

#[test]
fn the_node_service_decrypts_seed_values_made_here() {
    let key = key();
    let texts = plaintexts();
    let requests: Vec<String> = texts
        .iter()
        .map(|text| {
            let value = encrypt(text, &key, Format::Cbc, "").expect("encrypts");
            request("cbc-decrypt", "value", &value, "")
        })
        .collect();
    assert_eq!(node(&requests), texts);
}

#[test]
fn v2_values_made_by_node_from_the_documentation_decrypt_here() {
    let key = key();
    let texts = plaintexts();
    let requests: Vec<String> = texts
        .iter()
        .map(|text| request("v2-encrypt", "text", text, CONTEXT))
        .collect();
    for (text, value) in texts.iter().zip(node(&requests)) {
        assert_eq!(
            decrypt(&value, &key, CONTEXT).map(|d| d.into_text().into_owned()),
            Ok(text.clone()),
            "value {value}"
        );
    }
}

#[test]
fn node_decrypts_v2_values_made_here_following_the_documentation() {
    let key = key();
    let texts = plaintexts();
    let requests: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            // One fixed nonce and the rest random, so both entry points are covered.
            let value = if i == 0 {
                encrypt_gcm_with_nonce(text, &key, &[7; 12], CONTEXT)
            } else {
                encrypt(text, &key, Format::GcmV2, CONTEXT)
            }
            .expect("encrypts");
            request("v2-decrypt", "value", &value, CONTEXT)
        })
        .collect();
    assert_eq!(node(&requests), texts);
}
