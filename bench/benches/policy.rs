//! The policy stages on the request path: authenticating a virtual key
//! among 10,000 (SHA-256 included) and checking the model against the key's
//! team.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_policy::config::{Env, ProcessEnv};
use tollgate_policy::keys::{hash_key, hex, presented_key};
use tollgate_policy::Config;

const KEYS: usize = 10_000;

fn config() -> Config {
    let mut text = String::from(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"m\" }]\n\
         [[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"m\" }]\n[[teams]]\nname = \"t\"\nmodels = [\"gpt-4o*\"]\n",
    );
    for i in 0..KEYS {
        let hash = hex(&hash_key(format!("tg-{i:040}").as_bytes()));
        text.push_str(&format!("[[keys]]\nname = \"k{i}\"\nteam = \"t\"\nsha256 = \"{hash}\"\n"));
    }
    Config::parse("bench.toml", &text, &ProcessEnv as &dyn Env).expect("bench config")
}

fn authenticate(c: &mut Criterion) {
    let config = config();
    let header = format!("Bearer tg-{:040}", KEYS / 2).into_bytes();
    let now = 1_800_000_000;
    c.bench_function("authenticate/10k_keys+sha256+model_check", |b| {
        b.iter(|| {
            let presented = presented_key(Some(black_box(&header)), None).unwrap();
            let key = config.keys.authenticate(presented, now).unwrap();
            let (index, _) = config.routes.find(black_box(b"gpt-4o-mini")).unwrap();
            black_box(key.models.contains(index))
        })
    });
    let unknown = b"Bearer tg-not-a-key-0000000000000000000000000".to_vec();
    c.bench_function("authenticate/10k_keys_unknown", |b| {
        b.iter(|| {
            let presented = presented_key(Some(black_box(&unknown)), None).unwrap();
            black_box(config.keys.authenticate(presented, now).is_err())
        })
    });
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
