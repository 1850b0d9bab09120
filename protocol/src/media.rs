//! What the images and audio in a request cost in tokens: estimates for
//! the prompt counts the gateway makes itself (the tokens-per-minute
//! reservation near a limit, the estimate near a budget's end, the bill of
//! an answer that reports no usage). The provider's usage replaces them.
//!
//! Read by structure (`messages[].content[]` parts), never by searching
//! the bytes: an image's size comes from the first bytes of its base64
//! data (PNG, GIF, JPEG and WebP headers). An image given by URL, or whose
//! size cannot be read, is estimated at the most the provider bills for
//! one, so that an estimate never lets a tenant pay less than it used.

// Keys and types are compared decoded: a part typed `"\u0069mage_url"`
// or under `"c\u006fntent"` is an image all the same, and a tenant must
// not hide one from the estimate that way.
use crate::json::decodes_to as is;
use crate::openai::{elements, members, tools_run_by_provider, Cursor, DEPTH_MAX};
use crate::span::Span;

/// OpenAI's cost of an image at `detail: "low"`, and of each 512-pixel tile
/// at high detail on top of it (gpt-4o, gpt-4.1 and o-series pricing).
pub const OPENAI_IMAGE_BASE: u64 = 85;
pub const OPENAI_IMAGE_TILE: u64 = 170;
/// The most one image costs at high detail: scaled to fit 2048 pixels,
/// then to a shortest side of 768, an image covers at most 4 x 2 tiles.
pub const OPENAI_IMAGE_MAX: u64 = OPENAI_IMAGE_BASE + 8 * OPENAI_IMAGE_TILE;
/// Anthropic's images cost width x height / 750 tokens, after scaling to a
/// long edge of at most 1568 pixels: about 1,600 at most.
pub const ANTHROPIC_IMAGE_MAX: u64 = 1600;
/// An image whose size cannot be read (given by URL): the dearest either
/// provider bills for one, since a request may be translated for the
/// other's API.
pub const IMAGE_UNKNOWN: u64 =
    if OPENAI_IMAGE_MAX > ANTHROPIC_IMAGE_MAX { OPENAI_IMAGE_MAX } else { ANTHROPIC_IMAGE_MAX };
/// Audio input: OpenAI bills about one token per 100 ms.
pub const AUDIO_TOKENS_PER_SECOND: u64 = 10;
/// An earlier spoken answer given back by id (`{"role": "assistant",
/// "audio": {"id": ...}}`), which the provider reads again as audio input:
/// the most one answer can be, the audio models' output limit (16,384
/// tokens for `gpt-4o-audio-preview` and `gpt-audio`).
pub const AUDIO_BY_ID: u64 = 16_384;

/// Base64 characters of an image read for its size: enough for a JPEG
/// whose size marker follows a large EXIF block.
const HEADER_BASE64_MAX: usize = 96 * 1024;

/// Whether a body marks a part for the provider's prompt cache
/// (Anthropic's `cache_control`, which the provider bills writes for), or
/// may in escapes (`\u00XX`: a key's letter written so is a letter to the
/// provider). One pass for the two, as [`media_tokens`] looks.
pub fn marks_cache(body: &[u8]) -> bool {
    const NAMES: [&[u8]; 2] = [b"cache_control", b"\\u00"];
    static SEARCHER: std::sync::LazyLock<Option<aho_corasick::packed::Searcher>> =
        std::sync::LazyLock::new(|| aho_corasick::packed::Searcher::new(NAMES));
    match SEARCHER.as_ref() {
        Some(s) => s.find(body).is_some(),
        None => NAMES.iter().any(|n| memchr::memmem::find(body, n).is_some()),
    }
}

/// The tokens the images and audio of a chat, messages or Responses
/// request cost, as far as they can be told without the provider.
pub fn media_tokens(body: &[u8]) -> u64 {
    // Only a body that names a medium, or could name one in escapes, is
    // walked: a letter escaped is `\u00XX` (`"\u0069mage_url"` is
    // `image_url` to the provider). One pass for the three (Teddy: 113K
    // instructions for a 100 KB prompt, where three `memmem` passes were
    // 123K and the two before the escapes were looked for 95K).
    const NAMES: [&[u8]; 3] = [b"image", b"audio", b"\\u00"];
    static SEARCHER: std::sync::LazyLock<Option<aho_corasick::packed::Searcher>> =
        std::sync::LazyLock::new(|| aho_corasick::packed::Searcher::new(NAMES));
    let named = match SEARCHER.as_ref() {
        Some(s) => s.find(body).is_some(),
        None => NAMES.iter().any(|n| memchr::memmem::find(body, n).is_some()),
    };
    if !named {
        return 0;
    }
    walk(body, false).tokens
}

/// Whether a count of this body's prompt by the gateway can fall short of
/// what the provider bills for it: it holds an image, audio or a file
/// (whose cost the gateway estimates, at one model's rates, or cannot
/// know: a PDF is billed as its text and an image of each page), gives
/// the provider a tool it runs itself (its results are input the gateway
/// never sees), or asks for reasoning (OpenAI's `reasoning` and
/// `reasoning_effort`, Anthropic's `thinking`: tokens billed as output,
/// never streamed, or streamed as a summary). (A model that reasons by
/// default is the route's to say, `route::reasons_unseen`, whatever the
/// body asks: a switch that turns it off may not reach the provider, which
/// a translation drops or an API ignores.) Asked only when a client leaves
/// before its answer's end (whether to read the answer on for the
/// provider's usage: `proxy::relay`), so the bytes are searched for each
/// name in turn before the body is walked.
pub fn counted_in_part(body: &[u8]) -> bool {
    // Every name in NOT_TEXT, `item_reference` and the top-level keys the
    // walk reads holds one of these.
    const NAMES: [&[u8]; 11] = [
        b"image",
        b"audio",
        b"video",
        b"file",
        b"document",
        b"item_reference",
        b"tools",
        b"mcp_servers",
        b"reasoning",
        b"thinking",
        b"\\u00",
    ];
    NAMES.iter().any(|n| memchr::memmem::find(body, n).is_some()) && walk(body, true).uncounted
}

/// What a request's parts hold.
#[derive(Default)]
struct Media {
    /// What its images and audio cost, as far as the bytes tell.
    tokens: u64,
    /// A part holds a medium or a file: the provider's count of it is
    /// the gateway's estimate at best.
    uncounted: bool,
}

/// The parts of a chat, messages or Responses request: `messages[]` and
/// `input[]` items' `content[]`, and a Responses function call output's
/// `output[]`. With `partial` (the question of [`counted_in_part`], not of
/// the estimate) the top level's tools and reasoning are read too: the
/// estimate, made for every request that names a medium, skips them.
fn walk(body: &[u8], partial: bool) -> Media {
    let mut c = Cursor { buf: body, pos: 0, depth_max: DEPTH_MAX };
    let mut media = Media::default();
    c.ws();
    let _ = members(&mut c, &mut |c, key| {
        if partial {
            if let Some(read) = top_level_uncounted(c, key) {
                media.uncounted |= read?;
                return Some(());
            }
        }
        // Chat's and Anthropic's `messages`, the Responses API's `input`
        // (its items carry `content` parts the same way).
        if !(is(key, b"messages") || is(key, b"input")) || c.peek() != Some(b'[') {
            return c.value().ok();
        }
        elements(c, &mut |c| {
            if c.peek() != Some(b'{') {
                return c.value().ok();
            }
            members(c, &mut |c, key| {
                if is(key, b"type") && c.peek() == Some(b'"') {
                    // A Responses `item_reference` brings in an item the
                    // provider stores.
                    let kind = c.string().ok()?;
                    media.uncounted |= is(kind.get(c.buf), b"item_reference");
                    return Some(());
                }
                if is(key, b"audio") && c.peek() == Some(b'{') {
                    // A chat assistant message's earlier audio answer, by
                    // id: the provider reads it again as audio, up to
                    // the longest answer it can be.
                    media.uncounted = true;
                    media.tokens = media.tokens.saturating_add(AUDIO_BY_ID);
                    return c.value().ok();
                }
                if is(key, b"output") && c.peek() == Some(b'{') {
                    // A `computer_call_output`'s screenshot.
                    media.tokens = media.tokens.saturating_add(part(c, &mut media.uncounted)?);
                    return Some(());
                }
                // A Responses `function_call_output` returns its parts in
                // `output` (images and files among them).
                if !(is(key, b"content") || is(key, b"output")) || c.peek() != Some(b'[') {
                    return c.value().ok();
                }
                elements(c, &mut |c| {
                    if c.peek() != Some(b'{') {
                        return c.value().ok();
                    }
                    media.tokens = media.tokens.saturating_add(part(c, &mut media.uncounted)?);
                    Some(())
                })
            })
        })
    });
    media
}

/// Whether a top-level member the gateway cannot count the cost of says
/// so: `None` (the cursor where it was) for any other key; else the
/// member's value read, and whether it adds what the gateway cannot count
/// (`None` inside for a value that does not parse).
fn top_level_uncounted(c: &mut Cursor<'_>, key: &[u8]) -> Option<Option<bool>> {
    let read = if is(key, b"tools") && c.peek() == Some(b'[') {
        // A tool the provider runs itself (web or file search, a code
        // interpreter, an MCP server, Anthropic's web fetch) reads input
        // the gateway never sees; the client runs a function and the typed
        // tools `openai::CLIENT_TOOLS` names, and sends their results.
        // The route's walk of the tools decides, as for `hosted_tools`.
        let mut provider_runs = false;
        let read = tools_run_by_provider(c, &mut |_| provider_runs = true);
        // One the provider runs before a part that does not parse counts,
        // and a tool's key written with escapes may hide one.
        match read {
            _ if provider_runs => Some(true),
            Err(crate::openai::BodyError::AmbiguousKey) => Some(true),
            read => read.ok().map(|_| false),
        }
    } else if is(key, b"reasoning") && c.peek() == Some(b'{') {
        // A reasoning model's thinking, which OpenAI bills and never
        // streams (unless its effort is `none`).
        let mut effort = None;
        strings_of(c, &mut [(b"effort", &mut effort)]).map(|()| !effort.is_some_and(|e| is(e.get(c.buf), b"none")))
    } else if is(key, b"reasoning_effort") && c.peek() == Some(b'"') {
        c.string().ok().map(|effort| !is(effort.get(c.buf), b"none"))
    } else if is(key, b"thinking") && c.peek() == Some(b'{') {
        // Anthropic's extended thinking: billed whole, streamed as a
        // summary by the Claude 4 models, or redacted.
        let mut kind = None;
        strings_of(c, &mut [(b"type", &mut kind)]).map(|()| !kind.is_some_and(|k| is(k.get(c.buf), b"disabled")))
    } else if is(key, b"mcp_servers") {
        // Anthropic's MCP servers, as tools the provider runs.
        let start = c.pos;
        c.value().ok().map(|()| &c.buf[start..c.pos] != b"null")
    } else if is(key, b"audio") && c.peek() == Some(b'{') {
        // Chat's spoken answer (`audio: {voice, format}`): billed as audio
        // output, streamed as data the gateway does not count.
        c.value().ok().map(|()| true)
    } else if is(key, b"modalities") && c.peek() == Some(b'[') {
        // `["text", "audio"]` asks for the same.
        let mut audio = false;
        elements(c, &mut |c| {
            if c.peek() == Some(b'"') {
                let s = c.string().ok()?;
                audio |= is(s.get(c.buf), b"audio");
                Some(())
            } else {
                c.value().ok()
            }
        })
        .map(|()| audio)
    } else {
        return None;
    };
    Some(read)
}

/// The part types whose cost the gateway cannot count: images, audio,
/// video and files, in each API's names (OpenAI's and Anthropic's, and
/// those OpenAI-compatible servers take: vLLM's `audio_url`,
/// `image_embeds` and `video_url`, Mistral's `document_url`).
const NOT_TEXT: [&[u8]; 16] = [
    b"image_url",
    b"input_image",
    b"image",
    b"image_embeds",
    b"computer_screenshot",
    b"input_audio",
    b"audio",
    b"audio_url",
    b"file",
    b"input_file",
    b"document",
    b"document_url",
    b"container_upload",
    b"video",
    b"video_url",
    b"input_video",
];

/// The string members named in `wanted` of the object at the cursor, each
/// into its slot; the others skipped.
fn strings_of(c: &mut Cursor<'_>, wanted: &mut [(&[u8], &mut Option<Span>)]) -> Option<()> {
    members(c, &mut |c, key| match wanted.iter_mut().find(|(name, _)| is(key, name)) {
        Some((_, slot)) => string(c, slot),
        None => c.value().ok(),
    })
}

/// The fields of one content part that say what media it holds.
#[derive(Default)]
struct Part {
    kind: Option<Span>,
    url: Option<Span>,
    detail: Option<Span>,
    part_detail: Option<Span>,
    data: Option<Span>,
    format: Option<Span>,
}

/// A string value's span, or the value skipped.
fn string(c: &mut Cursor<'_>, into: &mut Option<Span>) -> Option<()> {
    if c.peek() == Some(b'"') {
        *into = Some(c.string().ok()?);
        Some(())
    } else {
        c.value().ok()
    }
}

/// The tokens of one content part (0 for text and anything else);
/// `uncounted` set where it (or a part inside it) is not text.
fn part(c: &mut Cursor<'_>, uncounted: &mut bool) -> Option<u64> {
    let buf = c.buf;
    let mut p = Part::default();
    // Parts inside a part: Anthropic's `tool_result` carries images too.
    let mut nested = 0u64;
    // A key that says what the part holds, given twice: parsers disagree
    // on which counts (and an object given twice would mix its fields
    // with the other's), so such a part is priced at the dearest image.
    let mut seen = 0u8;
    let mut repeated = false;
    members(c, &mut |c, key| {
        for (bit, name) in [&b"type"[..], b"image_url", b"source", b"detail", b"input_audio"].iter().enumerate() {
            if is(key, name) {
                repeated |= seen & (1 << bit) != 0;
                seen |= 1 << bit;
            }
        }
        if is(key, b"type") {
            string(c, &mut p.kind)
        } else if is(key, b"detail") {
            // The Responses API's `input_image` has it beside its URL (a
            // chat part's is inside `image_url`: one beside it is not read
            // as its detail, or `"detail": "low"` there would price a
            // high-detail image at 85).
            string(c, &mut p.part_detail)
        } else if is(key, b"content") && c.peek() == Some(b'[') {
            elements(c, &mut |c| {
                if c.peek() != Some(b'{') {
                    return c.value().ok();
                }
                nested = nested.saturating_add(part(c, uncounted)?);
                Some(())
            })
        } else if is(key, b"image_url") && c.peek() == Some(b'{') {
            // OpenAI: {"url": ..., "detail": ...}, or the URL alone.
            strings_of(c, &mut [(b"url", &mut p.url), (b"detail", &mut p.detail)])
        } else if is(key, b"image_url") {
            string(c, &mut p.url)
        } else if is(key, b"input_audio") && c.peek() == Some(b'{') {
            strings_of(c, &mut [(b"data", &mut p.data), (b"format", &mut p.format)])
        } else if is(key, b"source") && c.peek() == Some(b'{') {
            // Anthropic: {"type": "base64", "media_type": ..., "data": ...}
            // or {"type": "url", "url": ...}.
            strings_of(c, &mut [(b"data", &mut p.data), (b"url", &mut p.url)])
        } else {
            c.value().ok()
        }
    })?;
    let get = |s: Option<Span>| s.map_or(&b""[..], |s| s.get(buf));
    let kind = get(p.kind);
    *uncounted |= repeated || NOT_TEXT.iter().any(|t| is(kind, t));
    let own = if is(kind, b"image_url") || is(kind, b"input_image") || is(kind, b"computer_screenshot") {
        let detail = if is(kind, b"image_url") { p.detail } else { p.part_detail };
        if is(get(detail), b"low") && !repeated {
            return Some(OPENAI_IMAGE_BASE.saturating_add(nested));
        }
        let url = get(p.url);
        let b64 = url.iter().position(|&b| b == b',').filter(|_| url.starts_with(b"data:")).map(|i| &url[i + 1..]);
        b64.and_then(image_size).map_or(IMAGE_UNKNOWN, |(w, h)| openai_image(w, h))
    } else if is(kind, b"image") {
        let data = get(p.data);
        (!data.is_empty()).then(|| image_size(data)).flatten().map_or(IMAGE_UNKNOWN, |(w, h)| anthropic_image(w, h))
    } else if is(kind, b"input_audio") {
        audio(get(p.data), get(p.format))
    } else {
        0
    };
    let own = if repeated { own.max(IMAGE_UNKNOWN) } else { own };
    Some(own.saturating_add(nested))
}

/// OpenAI's high-detail cost of a `w` x `h` image.
pub fn openai_image(w: u32, h: u32) -> u64 {
    let (mut w, mut h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let fit = 2048.0 / w.max(h);
    if fit < 1.0 {
        (w, h) = (w * fit, h * fit);
    }
    let short = 768.0 / w.min(h);
    if short < 1.0 {
        (w, h) = (w * short, h * short);
    }
    let tiles = (w / 512.0).ceil() as u64 * (h / 512.0).ceil() as u64;
    OPENAI_IMAGE_BASE + OPENAI_IMAGE_TILE * tiles
}

/// Anthropic's cost of a `w` x `h` image.
pub fn anthropic_image(w: u32, h: u32) -> u64 {
    let (mut w, mut h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let fit = 1568.0 / w.max(h);
    if fit < 1.0 {
        (w, h) = (w * fit, h * fit);
    }
    ((w * h / 750.0).ceil() as u64).min(ANTHROPIC_IMAGE_MAX)
}

/// Audio's cost from its base64 data: a WAV's length from its header's
/// byte rate, anything else at 128 kbit/s (MP3's common rate; lower rates
/// would make it longer, so this is an estimate, not a bound).
fn audio(data: &[u8], format: &[u8]) -> u64 {
    let bytes = (data.len() as u64).saturating_mul(3) / 4;
    let byte_rate = if is(format, b"wav") {
        let header = decode_prefix(data, 64);
        header.get(28..32).map_or(0, |r| u64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]])))
    } else {
        0
    };
    let byte_rate = if byte_rate == 0 { 16_000 } else { byte_rate };
    (bytes.saturating_mul(AUDIO_TOKENS_PER_SECOND)).div_ceil(byte_rate)
}

/// Decodes the first base64 characters of `data` (at most `max`), skipping
/// the backslashes of JSON's `\/` and stopping at anything else outside
/// the alphabet.
fn decode_prefix(data: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(max * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    let data = &data[..data.len().min(max)];
    for (i, &b) in data.iter().enumerate() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            // JSON's `\/`; any other escape (`\u0041` for `A`) ends the
            // prefix: read past, its letters would shift every byte after
            // it, and a header could be made to say a small size.
            b'\\' if data.get(i + 1) == Some(&b'/') => continue,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// An image's width and height from the start of its base64 data.
pub fn image_size(b64: &[u8]) -> Option<(u32, u32)> {
    let b = decode_prefix(b64, HEADER_BASE64_MAX);
    let be16 = |i: usize| b.get(i..i + 2).map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])));
    let le16 = |i: usize| b.get(i..i + 2).map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])));
    let be32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    let le24 = |i: usize| b.get(i..i + 3).map(|s| u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16);
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            _ => None,
        };
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Segments until a start-of-frame marker, which holds the size.
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xff {
                return None;
            }
            let marker = b[i + 1];
            if marker == 0xff {
                i += 1;
                continue;
            }
            if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + be16(i + 2)? as usize;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base64 of `bytes` (the tests' own encoder, standard alphabet).
    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
        out
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0]);
        v
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut v = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16];
        v.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        v.extend_from_slice(&[0xff, 0xc0, 0, 17, 8]);
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&[3; 12]);
        v
    }

    /// OpenAI's documented examples: 1024 x 1024 at high detail is 765
    /// tokens, 2048 x 4096 is 1105, and anything at low detail 85.
    #[test]
    fn openai_prices_images_by_tiles() {
        assert_eq!(openai_image(1024, 1024), 765);
        assert_eq!(openai_image(2048, 4096), 1105);
        assert_eq!(openai_image(100, 100), 255);
        for (w, h) in [(1, 1), (4000, 100), (100, 4000), (2048, 768), (8000, 8000), (3000, 1200)] {
            assert!(openai_image(w, h) <= OPENAI_IMAGE_MAX, "{w}x{h}");
        }
        assert_eq!(anthropic_image(1000, 1000), 1334.min(ANTHROPIC_IMAGE_MAX));
        assert!(anthropic_image(8000, 8000) <= ANTHROPIC_IMAGE_MAX);
    }

    #[test]
    fn sizes_come_from_the_headers() {
        assert_eq!(image_size(b64(&png(1024, 768)).as_bytes()), Some((1024, 768)));
        assert_eq!(image_size(b64(&jpeg(640, 480)).as_bytes()), Some((640, 480)));
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0x20, 0x03, 0x58, 0x02, 0, 0]);
        assert_eq!(image_size(b64(&gif).as_bytes()), Some((800, 600)));
        // JSON's escaped slash in base64 changes nothing.
        let escaped = b64(&png(1024, 768)).replace('/', "\\/");
        assert_eq!(image_size(escaped.as_bytes()), Some((1024, 768)));
        assert_eq!(image_size(b"bm90IGFuIGltYWdl"), None);
    }

    /// The attack the issue measured: 50 high-detail images counted as a
    /// handful of tokens. By URL (size unknown) each costs the most.
    #[test]
    fn images_and_audio_in_a_request_are_counted() {
        let by_url = r#"{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}}"#;
        let parts = vec![by_url; 50].join(",");
        let body = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":[{parts}]}}]}}"#);
        assert_eq!(media_tokens(body.as_bytes()), 50 * IMAGE_UNKNOWN);
        let data = b64(&png(1024, 1024));
        let body = format!(
            r#"{{"messages":[{{"content":"no media here"}},{{"role":"user","content":[{{"type":"text","text":"see"}},{{"type":"image_url","image_url":{{"detail":"auto","url":"data:image/png;base64,{data}"}}}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{data}","detail":"low"}}}}]}}]}}"#
        );
        assert_eq!(media_tokens(body.as_bytes()), 765 + 85);
        // Anthropic's image blocks, and one by URL.
        let body = format!(
            r#"{{"model":"claude","messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{data}"}}}},{{"type":"image","source":{{"type":"url","url":"https://x/y.jpg"}}}}]}}]}}"#
        );
        assert_eq!(media_tokens(body.as_bytes()), 1399 + IMAGE_UNKNOWN);
        // An image inside a tool's result counts too.
        let body = r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN);
        // Ten seconds of 16 kHz mono 16-bit WAV: 100 tokens.
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data".to_vec();
        wav.resize(44 + 320_000, 0);
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"{}","format":"wav"}}}}]}}]}}"#,
            b64(&wav)
        );
        let t = media_tokens(body.as_bytes());
        assert!((100..=102).contains(&t), "{t}");
        // Escapes hide nothing: the type, the keys above it and around
        // its fields are read as the provider decodes them.
        for body in [
            r#"{"messages":[{"role":"user","content":[{"type":"\u0069mage_url","image_url":{"url":"https://x/a.png"}}]}]}"#,
            r#"{"messages":[{"role":"user","c\u006fntent":[{"typ\u0065":"image_url","image_url":{"url":"https://x/a.png"}}]}]}"#,
            r#"{"m\u0065ssages":[{"role":"user","content":[{"type":"\u0069\u006d\u0061\u0067\u0065","source":{"type":"url","url":"https://x/y.png"}}]}]}"#,
        ] {
            assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN, "{body}");
        }
        let low = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_\u0075rl":{{"url":"data:image/png;base64,{data}","d\u0065tail":"l\u006fw"}}}}]}}]}}"#
        );
        assert_eq!(media_tokens(low.as_bytes()), OPENAI_IMAGE_BASE);
        // The Responses API: `input` items' `input_image` parts, by URL,
        // by data, and at low detail (beside the URL, not inside it).
        let body = format!(
            r#"{{"model":"gpt-4o","input":[{{"role":"user","content":[{{"type":"input_text","text":"see"}},{{"type":"input_image","image_url":"https://x/a.png"}},{{"type":"input_image","image_url":"data:image/png;base64,{data}"}},{{"type":"input_image","detail":"low","image_url":"https://x/b.png"}}]}}]}}"#
        );
        assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN + 765 + 85);
        // A chat part's detail is the one inside `image_url`.
        let body = r#"{"messages":[{"role":"user","content":[{"type":"image_url","detail":"low","image_url":{"url":"https://x/a.png"}}]}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN);
        // Escapes inside base64 end what is read of it (letters written
        // `\u00XX` would shift the header); a part that repeats what says
        // what it holds is priced at the dearest image.
        let shifted = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{}\u0041{}"}}}}]}}]}}"#,
            &data[..8],
            &data[8..]
        );
        assert_eq!(media_tokens(shifted.as_bytes()), IMAGE_UNKNOWN);
        let twice = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{data}"}},"source":{{"type":"url","url":"https://x/big.jpg"}}}},{{"type":"image_url","image_url":{{"url":"a","detail":"low"}},"image_url":{{"url":"https://x/big.png"}}}}]}}]}}"#
        );
        assert_eq!(media_tokens(twice.as_bytes()), 2 * IMAGE_UNKNOWN);
        // A text that talks about images is text.
        let body = r#"{"messages":[{"role":"user","content":"an image_url with input_audio"}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), 0);
    }

    /// The route's scan calls a body text-only (and the media estimate is
    /// skipped) only where the estimate finds nothing: the attacks a
    /// tenant would try to hide an image from it are not text-only.
    #[test]
    fn a_text_only_body_has_no_media() {
        use crate::openai::scan_request;
        let image = r#"{"type":"image_url","image_url":{"url":"https://x/a.png"}}"#;
        let hidden = [
            // Parts, in a user's or an assistant's message.
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":[{image}]}}]}}"#),
            format!(r#"{{"model":"m","messages":[{{"role":"assistant","content":[{image}]}}]}}"#),
            // A content key written in escapes (the walk decodes keys),
            // on a message that needs none: refused.
            format!(r#"{{"model":"m","messages":[{{"role":"assistant","c\u006fntent":[{image}]}}]}}"#),
            // A second content, a second `messages`.
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi","content":[{image}]}}]}}"#),
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"messages":[{{"role":"user","content":[{image}]}}]}}"#
            ),
            // A screenshot as a message's `output`; the Responses `input`.
            r#"{"model":"m","messages":[{"role":"assistant","output":{"type":"input_image","image_url":"https://x/a.png"}}]}"#
                .to_string(),
            format!(r#"{{"model":"m","input":[{{"role":"user","content":[{image}]}}]}}"#),
            // An earlier spoken answer, by id, on a message with content.
            r#"{"model":"m","messages":[{"role":"assistant","content":"hi","audio":{"id":"audio_abc"}},{"role":"user","content":"again"}]}"#
                .to_string(),
        ];
        // A key in escapes, at the top level or in a message, is refused.
        let escaped = format!(r#"{{"model":"m","m\u0065ssages":[{{"role":"user","content":[{image}]}}]}}"#);
        for body in hidden.iter().chain([&escaped]) {
            assert!(media_tokens(body.as_bytes()) > 0, "{body}");
            assert!(!scan_request(body.as_bytes()).is_ok_and(|f| f.text_only), "{body}");
        }
        // Text, talking about images or not, is text-only.
        for body in [
            r#"{"model":"m","messages":[{"role":"system","content":"an image_url"},{"role":"user","content":"input_audio"}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"x"}]}"#,
        ] {
            assert!(scan_request(body.as_bytes()).unwrap().text_only, "{body}");
            assert_eq!(media_tokens(body.as_bytes()), 0);
        }
    }

    /// A body holding an image, audio or a file, in any API's shape,
    /// nested in a tool result or a function call's output, or typed in
    /// escapes, is one whose count falls short; text that talks about them
    /// is not.
    #[test]
    fn media_and_files_make_a_count_partial() {
        let partial = [
            r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0x"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-abc"}}]}]}"#,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-abc"}]}]}"#,
            r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"https://x/a.png"}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0x"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"\u0066ile","file":{"file_id":"f"}}]}]}"#,
            "{ \"input\" : [ { \"content\" :\n [ { \"file_id\":\"f\", \"type\" : \"input_file\" } ] } ], \"model\":\"m\" }",
            r#"{"messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"https://x/v.mp4"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"audio_url","audio_url":{"url":"https://x/a.wav"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"document_url","document_url":"https://x/d.pdf"}]}]}"#,
            r#"{"model":"m","input":[{"type":"computer_call_output","call_id":"c","output":{"type":"computer_screenshot","image_url":"data:image/png;base64,iVBO"}}]}"#,
            r#"{"model":"m","input":[{"type":"item_reference","id":"msg_123"},{"role":"user","content":"go on"}]}"#,
            r#"{"messages":[{"role":"assistant","audio":{"id":"audio_abc"}},{"role":"user","content":"again"}]}"#,
            r#"{"model":"m","input":"news?","tools":[{"type":"function","name":"f"},{"type":"web_search"}]}"#,
            r#"{"model":"m","messages":[],"tools":[{"name":"web_search","type":"web_search_20250305","max_uses":3}]}"#,
            r#"{"model":"m","messages":[],"mcp_servers":[{"type":"url","url":"https://x/mcp","name":"x"}]}"#,
            // A key written with escapes may hide a tool's type.
            r#"{"model":"m","input":"x","tools":[{"t\u0079pe":"web_search"}]}"#,
            r#"{"model":"m","input":"think","reasoning":{"effort":"high"}}"#,
            r#"{"model":"m","input":"think","reasoning":{"summary":"auto"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"think"}],"reasoning_effort":"low"}"#,
            r#"{"model":"m","max_tokens":2048,"thinking":{"budget_tokens":1024,"type":"enabled"},"messages":[]}"#,
            // A spoken answer: audio output the gateway does not count.
            r#"{"model":"gpt-4o-audio-preview","modalities":["text","audio"],"audio":{"voice":"alloy","format":"pcm16"},"messages":[]}"#,
            r#"{"model":"m","messages":[],"modalities":[ "text" , "\u0061udio" ]}"#,
            r#"{"model":"m","messages":[],"audio":{"voice":"alloy","format":"wav"}}"#,
        ];
        for body in partial {
            assert!(counted_in_part(body.as_bytes()), "{body}");
        }
        let whole = [
            r#"{"messages":[{"role":"user","content":"the file, the document, an image_url, input_audio"}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"see the \"file\" and \"image\""}]}]}"#,
            r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"file written"}]}"#,
            r#"{"model":"m","input":"read the document","tools":[{"type":"function","name":"file","parameters":{"type":"object"}}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"reasoning_effort":null}"#,
            r#"{"model":"m","input":"x","tools":[{"type":"custom","name":"grammar"}],"reasoning":null}"#,
            r#"{"model":"m","messages":[],"tools":[{"type":"bash_20250124","name":"bash"},{"type":"text_editor_20250728","name":"str_replace_based_edit_tool"}]}"#,
            r#"{"model":"m","input":"x","tools":[{"type":"computer_use_preview","display_width":1024},{"type":"local_shell"}]}"#,
            r#"{"model":"m","input":"x","reasoning":{"effort":"none"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"thinking":{"type":"disabled"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"say audio"}],"modalities":["text"],"audio":null}"#,
        ];
        for body in whole {
            assert!(!counted_in_part(body.as_bytes()), "{body}");
        }
        // A cache mark, or a key that may be one in escapes; not text.
        assert!(marks_cache(br#"{"system":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}"#));
        assert!(marks_cache(br#"{"system":[{"type":"text","text":"x","cache\u005fcontrol":{"type":"ephemeral"}}]}"#));
        assert!(!marks_cache(br#"{"messages":[{"role":"user","content":"cache control, \u4e2d\u6587"}]}"#));
        // An earlier spoken answer by id counts as the longest it can be.
        let body = r#"{"messages":[{"role":"assistant","audio":{"id":"audio_abc"}},{"role":"assistant","audio":{"id":"audio_def"}},{"role":"user","content":"again"}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), 2 * AUDIO_BY_ID);
        // A function call's output's images are priced too, and a
        // computer call's screenshot.
        let body = r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"https://x/a.png"}]}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN);
        let body = r#"{"model":"m","input":[{"type":"computer_call_output","call_id":"c","output":{"type":"computer_screenshot","image_url":"https://x/s.png"}}]}"#;
        assert_eq!(media_tokens(body.as_bytes()), IMAGE_UNKNOWN);
    }
}
