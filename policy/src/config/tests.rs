//! Configuration tests: each problem with its position and its fix.

use super::*;

struct TestEnv;

impl Env for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        (name == "SET").then(|| "secret".to_string())
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        match path {
            "/run/key" => Ok("file-secret\n".to_string()),
            "/run/evil" => Ok("sk-1\r\nx-evil: 1\n".to_string()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    fn hostname(&self) -> Option<String> {
        Some("test-host".to_string())
    }
}

fn problems(text: &str) -> Vec<String> {
    match Config::parse("gw.toml", text, &TestEnv) {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

const BASE: &str = r#"
[[providers]]
name = "local"
kind = "mock"

[[models]]
name = "gpt-4o"
targets = [{ provider = "local" }]

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "local" }]
price = { input_per_mtok = 0.15, output_per_mtok = 0.60, cached_input_per_mtok = 0.075 }

[[models]]
name = "claude-sonnet"
targets = [{ provider = "local" }]

[[guardrail_profiles]]
name = "strict"
"#;

#[test]
fn bundled_default_is_valid() {
    let c = Config::parse("bundled", BUNDLED_DEFAULT, &TestEnv).unwrap();
    assert!(c.routes.find(b"gpt-4o-mini").is_some());
    assert_eq!(c.providers[0].kind, ProviderKind::Mock);
    assert!(!c.keys.is_empty());
    assert_eq!(c.source.sha256.len(), 64);
}

/// Every file in `examples/` validates, so that none rots when the format
/// changes. Credentials are answered with placeholders: examples name
/// variables and files that only a real deployment has.
#[test]
fn every_example_is_valid() {
    struct AnyCredential;
    impl Env for AnyCredential {
        fn var(&self, _: &str) -> Option<String> {
            Some("placeholder".to_string())
        }
        fn read_file(&self, _: &str) -> std::io::Result<String> {
            Ok("placeholder".to_string())
        }
        fn hostname(&self) -> Option<String> {
            None
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let path = entry.expect("examples/ entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("example file");
            if let Err(e) = Config::parse(&path.display().to_string(), &text, &AnyCredential) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples found in {dir}");
}

/// A name with a control character is refused where it is written: names
/// go into response headers, records and metrics' labels.
#[test]
fn names_with_control_characters_are_refused() {
    let text = "[[providers]]\nname = \"lo\\r\\ncal\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\\t\"\ntargets = [{ provider = \"lo\\r\\ncal\", model = \"x\\r\\nSet-Cookie: a=b\" }]\n";
    let found = problems(text);
    assert!(
        found.iter().any(|p| p.starts_with("gw.toml:2:8: provider \"lo\\r\\ncal\" holds a control character")),
        "{found:?}"
    );
    assert!(found.iter().any(|p| p.starts_with("gw.toml:6:8: model \"m\\t\" holds a control character")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("target model \"x\\r\\nSet-Cookie: a=b\" holds a control character")),
        "{found:?}"
    );
}

#[test]
fn problems_name_line_column_and_fix() {
    let text = "[[providers]]\nname = \"local\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"locl\" }]\n";
    assert_eq!(
        problems(text),
        vec!["gw.toml:7:25: model \"m\" routes to unknown provider \"locl\"; did you mean \"local\"?"]
    );
    let text = "[server]\nlisten = \"nope\"\n";
    assert_eq!(
        problems(text),
        vec!["gw.toml:2:10: listen address \"nope\" is not IP:port; write it like \"127.0.0.1:8080\""]
    );
    let text = "[[providers]]\nname = \"p\"\nkind = \"opnai\"\n";
    assert!(problems(text)[0].starts_with("gw.toml:3:8: unknown provider kind \"opnai\""));
    let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"ftp://api.openai.com/v1\"\n";
    assert!(problems(text)[0].contains("must start with https:// or http://"));
    let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key_env = \"UNSET\"\n";
    assert_eq!(
        problems(text),
        vec!["gw.toml:5:15: environment variable UNSET is not set; export it with the provider's API key"]
    );
    let text = "[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n";
    assert!(problems(text)[0].starts_with("gw.toml:3:1: unknown field `bogus`"));
}

/// Flex at half is a default only where every target is OpenAI's own API:
/// an answer's `flex` from Anthropic, Gemini or an
/// OpenAI-compatible server (which may echo the request's tier without
/// discounting it) is billed at the standard rates, configured or built
/// in, unless the price sets `flex_factor`.
#[test]
fn flex_is_half_price_by_default_only_at_openai() {
    let config = |kind: &str, second: &str, price: &str| {
        format!(
            "[[providers]]\nname = \"a\"\nkind = \"{kind}\"\nbase_url = \"https://x.example/v1\"\napi_key_env = \"SET\"\n\n[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key_env = \"SET\"\n\n[[models]]\nname = \"m\"\ntargets = [{{ provider = \"o\", model = \"gpt-4o\" }}{second}]\n{price}"
        )
    };
    let route = |text: &str| {
        let c = Config::parse("gw.toml", text, &TestEnv).unwrap_or_else(|e| panic!("{e:?}"));
        let (_, r) = c.routes.find(b"m").unwrap();
        (
            r.price.map(|p| p.flex_permille),
            r.targets.iter().map(|t| t.builtin_price.map(|p| p.flex_permille)).collect::<Vec<_>>(),
        )
    };
    let priced = "price = { input_per_mtok = 2.5, output_per_mtok = 10 }\n";
    let factor = "price = { input_per_mtok = 2.5, output_per_mtok = 10, flex_factor = 0.5 }\n";
    let other = ", { provider = \"a\", model = \"gpt-4o\" }";
    // OpenAI alone: half.
    assert_eq!(route(&config("openai", "", priced)), (Some(500), vec![Some(500)]));
    for kind in ["openai-compatible", "anthropic", "gemini"] {
        // A target elsewhere: the configured price's flex is standard, and
        // so is that target's built-in price; OpenAI's keeps its half.
        assert_eq!(route(&config(kind, other, priced)), (Some(0), vec![Some(500), Some(0)]), "{kind}");
        // Unless the price says so.
        assert_eq!(route(&config(kind, other, factor)).0, Some(500), "{kind}");
    }
}

/// A configured price bills what it leaves out high rather than low:
/// cached input at the input price, cache writes at 1.25 times it and
/// hour-long ones at twice it (as Anthropic bills them, the one provider
/// that reports writes); a long-context tier replaces every rate past its
/// threshold; a threshold of 0 and a tier cheaper than the price are
/// refused.
#[test]
fn a_price_may_have_a_long_context_tier_hour_long_cache_writes_and_audio() {
    let model = |price: &str| {
        format!("[[providers]]\nname = \"local\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{{ provider = \"local\" }}]\nprice = {price}\n")
    };
    let price =
        |text: &str| Config::parse("gw.toml", text, &TestEnv).unwrap().routes.find(b"m").unwrap().1.price.unwrap();
    let p = price(&model("{ input_per_mtok = 3, output_per_mtok = 15 }"));
    assert_eq!(
        (p.cached_input_per_mtok, p.cache_write_per_mtok, p.cache_write_1h_per_mtok),
        (3_000_000, 3_750_000, 6_000_000)
    );
    assert_eq!(p.long_context, None);
    assert_eq!((p.audio_input_per_mtok, p.audio_output_per_mtok), (3_000_000, 15_000_000));
    let p = price(&model(
        "{ input_per_mtok = 2.5, output_per_mtok = 10, audio_input_per_mtok = 40, audio_output_per_mtok = 80 }",
    ));
    assert_eq!((p.audio_input_per_mtok, p.audio_output_per_mtok), (40_000_000, 80_000_000));
    assert_eq!((p.priority_permille, p.flex_permille), (2000, 500), "priority at twice, flex at half");
    let p = price(&model("{ input_per_mtok = 3, output_per_mtok = 15, priority_factor = 1.0, flex_factor = 0.75 }"));
    assert_eq!((p.priority_permille, p.flex_permille), (1000, 750));
    let zero = problems(&model("{ input_per_mtok = 3, output_per_mtok = 15, priority_factor = 0 }"));
    assert!(zero.len() == 1 && zero[0].contains("not this tier's price multiple"), "{zero:?}");
    let dearer_flex = problems(&model("{ input_per_mtok = 3, output_per_mtok = 15, flex_factor = 1.5 }"));
    assert!(dearer_flex.len() == 1 && dearer_flex[0].contains("from 0.01 to 1"), "{dearer_flex:?}");
    let p = price(&model(
        "{ input_per_mtok = 3, output_per_mtok = 15, cached_input_per_mtok = 0.3, cache_write_per_mtok = 3.75, cache_write_1h_per_mtok = 6, long_context = { above_tokens = 200000, input_per_mtok = 6, output_per_mtok = 22.5, cache_write_per_mtok = 7.5 } }",
    ));
    assert_eq!(p.cache_write_1h_per_mtok, 6_000_000);
    let long = p.long_context.unwrap();
    assert_eq!((long.above_tokens, long.input_per_mtok, long.output_per_mtok), (200_000, 6_000_000, 22_500_000));
    // Left out of the tier: cached input at its input price, hour-long
    // writes at twice it.
    assert_eq!((long.cached_input_per_mtok, long.cache_write_1h_per_mtok), (6_000_000, 12_000_000));
    assert_eq!(p.for_prompt(200_001).output_per_mtok, 22_500_000);
    let zero = model("{ input_per_mtok = 3, output_per_mtok = 15, long_context = { above_tokens = 0, input_per_mtok = 6, output_per_mtok = 22.5 } }");
    let found = problems(&zero);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("gw.toml:8:") && found[0].contains("such as 200000"), "{found:?}");
    let cheaper = model("{ input_per_mtok = 3, output_per_mtok = 15, long_context = { above_tokens = 200000, input_per_mtok = 6, output_per_mtok = 10 } }");
    let found = problems(&cheaper);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("long_context's output_per_mtok (10) is below the price's own (15)"), "{found:?}");
    let unknown = model("{ input_per_mtok = 3, output_per_mtok = 15, long_context = { above = 1, input_per_mtok = 6, output_per_mtok = 22.5 } }");
    assert!(problems(&unknown)[0].contains("unknown field `above`"), "{:?}", problems(&unknown));
}

/// Who serves the Responses API itself: OpenAI and the mock by default, an
/// OpenAI-compatible server when it says so; never Anthropic.
#[test]
fn responses_api_defaults_by_kind_and_is_refused_for_anthropic() {
    let text = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://o\"\n[[providers]]\nname = \"c\"\nkind = \"openai-compatible\"\nbase_url = \"http://c\"\n[[providers]]\nname = \"v\"\nkind = \"openai-compatible\"\nbase_url = \"http://v\"\nresponses_api = true\n[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nbase_url = \"http://a\"\n";
    let c = Config::parse("gw.toml", text, &TestEnv).unwrap();
    let served: Vec<bool> = c.providers.iter().map(|p| p.responses_api).collect();
    assert_eq!(served, [true, false, true, true, false]);
    let wrong = "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nbase_url = \"http://a\"\nresponses_api = true\n";
    assert_eq!(
        problems(wrong),
        vec!["gw.toml:5:17: provider \"a\": Anthropic serves no Responses API; remove responses_api (requests to /v1/responses are translated for it)"]
    );
}

/// Gemini's key goes in its own header, Vertex AI's token as a bearer;
/// a model that cannot be a URL segment, and a Responses API, are refused.
#[test]
fn gemini_and_vertex_providers() {
    let text = "[[providers]]\nname = \"g\"\nkind = \"gemini\"\nbase_url = \"https://generativelanguage.googleapis.com/v1beta\"\napi_key_env = \"SET\"\n[[providers]]\nname = \"v\"\nkind = \"vertex\"\nbase_url = \"https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google\"\napi_key_file = \"/run/key\"\n[[models]]\nname = \"flash\"\ntargets = [{ provider = \"g\", model = \"gemini-2.5-flash\" }, { provider = \"v\", model = \"gemini-2.5-flash@001\" }]\n";
    let c = Config::parse("gw.toml", text, &TestEnv).unwrap();
    let (g, v) = (&c.providers[0], &c.providers[1]);
    assert_eq!((g.kind, v.kind), (ProviderKind::Gemini, ProviderKind::Gemini));
    assert_eq!(g.api_key_header.as_deref(), Some("x-goog-api-key"));
    assert_eq!(v.api_key_header, None, "Vertex AI's token goes as Authorization: Bearer");
    assert!(!g.responses_api && !g.stream_usage);
    assert_eq!(v.base_path, "/v1/projects/p/locations/us-central1/publishers/google");
    let colon = text.replace("gemini-2.5-flash@001", "gemini:flash");
    assert_eq!(
        problems(&colon),
        vec!["gw.toml:13:73: model \"gemini:flash\" cannot go in a Gemini URL; Gemini models are named with letters, digits and . - _ / @ (such as \"gemini-2.5-flash\")"]
    );
    let wrong = "[[providers]]\nname = \"g\"\nkind = \"gemini\"\nbase_url = \"http://g\"\nresponses_api = true\n";
    assert!(problems(wrong)[0].contains("Gemini serves no Responses API"), "{:?}", problems(wrong));
}

/// An environment with AWS's variables, and a shared credentials file.
struct AwsEnv;

impl Env for AwsEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDENV".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".into()),
            "AWS_REGION" => Some("eu-central-1".into()),
            "HOME" => Some("/home/gw".into()),
            _ => None,
        }
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        match path {
            "/home/gw/.aws/credentials" => Ok("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\naws_session_token = tok\n\n[other]\naws_access_key_id=AKIDOTHER\n".into()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    fn hostname(&self) -> Option<String> {
        None
    }
}

#[test]
fn bedrock_providers_take_a_region_and_credentials_from_env_file_or_instance() {
    let text = "[[providers]]\nname = \"a\"\nkind = \"bedrock\"\n[[providers]]\nname = \"b\"\nkind = \"bedrock\"\nregion = \"us-west-2\"\naws_credentials = \"file\"\n[[providers]]\nname = \"c\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\naws_credentials = \"instance\"\n";
    let c = Config::parse("gw.toml", text, &AwsEnv).unwrap();
    let aws = |i: usize| c.providers[i].aws.clone().unwrap();
    assert_eq!(aws(0).region, "eu-central-1", "AWS_REGION when the provider names none");
    assert_eq!(c.providers[0].host_header, "bedrock-runtime.eu-central-1.amazonaws.com");
    assert!(c.providers[0].tls.is_some());
    assert!(
        matches!(aws(0).credentials, AwsCredentials::Static(ref k) if k.access_key_id == "AKIDENV" && k.session_token.is_none())
    );
    assert!(
        matches!(aws(1).credentials, AwsCredentials::Static(ref k) if k.access_key_id == "AKIDFILE" && k.session_token.as_deref() == Some("tok"))
    );
    assert_eq!(aws(2).credentials, AwsCredentials::Instance { imds_url: "http://169.254.169.254".into() });
    assert!(!format!("{:?}", aws(1)).contains("file-secret"), "secrets never print");
    let no_keys = "[[providers]]\nname = \"a\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\n";
    assert!(
        problems(no_keys)[0].contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
        "{:?}",
        problems(no_keys)
    );
    let no_region = "[[providers]]\nname = \"a\"\nkind = \"bedrock\"\naws_credentials = \"instance\"\n";
    assert!(problems(no_region)[0].contains("Bedrock needs a region"));
    let profile = text.replace("aws_credentials = \"file\"", "aws_credentials = \"file\"\naws_profile = \"other\"");
    let e = Config::parse("gw.toml", &profile, &AwsEnv).unwrap_err().problems[0].to_string();
    assert!(e.contains("has no profile [other] with aws_access_key_id and aws_secret_access_key"), "{e}");
    let stray = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://o\"\nregion = \"us-east-1\"\n";
    assert!(problems(stray)[0].contains("are for bedrock providers"));
    let key = "[[providers]]\nname = \"a\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\naws_credentials = \"instance\"\napi_key_env = \"SET\"\n";
    assert!(problems(key)[0].contains("Bedrock signs with AWS credentials, not an API key"));
}

#[test]
fn provider_urls_and_credentials() {
    let text = "[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"http://10.0.0.1:8000/v1/\"\napi_key_env = \"SET\"\n[[providers]]\nname = \"q\"\nkind = \"openai\"\nbase_url = \"http://q\"\napi_key_file = \"/run/key\"\n";
    let c = Config::parse("gw.toml", text, &TestEnv).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.host, Some(("10.0.0.1".to_string(), 8000)));
    assert_eq!(p.host_header, "10.0.0.1:8000");
    assert_eq!(p.base_path, "/v1");
    assert_eq!(p.credential, Some(Credential("secret".into())));
    assert_eq!(format!("{:?}", p.credential), "Some(Credential(..))");
    assert_eq!(c.providers[1].credential, Some(Credential("file-secret".into())));
    assert_eq!(c.providers[1].host, Some(("q".to_string(), 80)));
    assert_eq!(c.providers[0].tls, None);
    let evil = text.replace("/run/key", "/run/evil");
    assert!(problems(&evil)[0].contains("the API key contains a line break"), "{:?}", problems(&evil));
    assert!(problems("[server]\nbody_bytes_max = 5000000000\n")[0].contains("over the 1073741824-byte limit"));
    assert!(problems("[server.timeouts]\nrequest_ms = 0\n")[0].contains("request_ms = 0 would fail every request"));
    let missing = text.replace("/run/key", "/run/nope");
    assert!(problems(&missing)[0].starts_with("gw.toml:10:16: cannot read api_key_file \"/run/nope\""));
}

#[test]
fn https_providers_verify_with_system_roots_and_an_optional_ca_file() {
    let text = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\n[[providers]]\nname = \"l\"\nkind = \"openai-compatible\"\nbase_url = \"https://localhost:8443/v1\"\nca_file = \"/run/key\"\n";
    let c = Config::parse("gw.toml", text, &TestEnv).unwrap();
    assert_eq!(c.providers[0].host, Some(("api.openai.com".to_string(), 443)));
    assert_eq!(c.providers[0].host_header, "api.openai.com");
    assert_eq!(c.providers[0].tls, Some(TlsSettings { server_name: "api.openai.com".into(), ca_file: None }));
    assert_eq!(c.providers[1].host_header, "localhost:8443");
    assert_eq!(c.providers[1].tls.as_ref().unwrap().ca_file.as_deref(), Some("/run/key"));
    let bad = text.replace("/run/key", "/run/missing");
    assert!(problems(&bad)[0].contains("cannot read ca_file \"/run/missing\""));
    let plain = "[[providers]]\nname = \"l\"\nkind = \"openai-compatible\"\nbase_url = \"http://localhost:80/v1\"\nca_file = \"/run/key\"\n";
    assert!(problems(plain)[0].contains("ca_file applies to https:// base URLs only"));
}

#[test]
fn azure_style_base_urls_keep_their_query_and_key_header() {
    let text = "[[providers]]\nname = \"az\"\nkind = \"openai-compatible\"\nbase_url = \"https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-06-01\"\napi_key_env = \"SET\"\napi_key_header = \"Api-Key\"\n";
    let c = Config::parse("gw.toml", text, &TestEnv).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.base_path, "/openai/deployments/gpt4o");
    assert_eq!(p.query, "?api-version=2024-06-01");
    assert_eq!(p.api_key_header.as_deref(), Some("api-key"));
    assert!(problems(&text.replace("Api-Key", "api key"))[0].contains("is not a header name"));
}

#[test]
fn teams_resolve_patterns_and_suggest_fixes() {
    let text = format!(
        "{BASE}\n[[teams]]\nname = \"search\"\nmodels = [\"gpt-4o*\"]\nguardrails = \"strict\"\nlabels = {{ cost_center = \"cc-7\" }}\nbudget = {{ daily_usd = 12.5, soft_threshold = 0.9 }}\nrate_limit = {{ requests_per_minute = 600 }}\n"
    );
    let c = Config::parse("gw.toml", &text, &TestEnv).unwrap();
    let t = &c.teams[0];
    assert_eq!(t.models.iter().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(t.guardrail_profile, Some(0));
    assert_eq!(t.labels["cost_center"], "cc-7");
    assert_eq!(t.budget.daily, Some(12_500_000));
    assert_eq!(t.budget.soft_threshold_permille, 900);
    assert_eq!(t.rate_limit.requests_per_minute, Some(600));
    let price = c.routes.find(b"gpt-4o-mini").unwrap().1.price.unwrap();
    assert_eq!((price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok), (150_000, 600_000, 75_000));

    let typo = format!("{BASE}\n[[teams]]\nname = \"search\"\nmodels = [\"gpt4o\", \"o1*\"]\nguardrails = \"strct\"\n");
    let lines: Vec<&str> = typo.lines().collect();
    let line = lines.iter().position(|l| l.starts_with("models = [\"gpt4o\"")).unwrap() + 1;
    assert_eq!(
        problems(&typo),
        vec![
            format!("gw.toml:{line}:11: team \"search\" allows unknown model \"gpt4o\"; did you mean \"gpt-4o\"?"),
            format!("gw.toml:{line}:20: team \"search\" allows \"o1*\", which matches no configured model; check the pattern against [[models]]"),
            format!("gw.toml:{}:14: team \"search\" uses unknown guardrail profile \"strct\"; did you mean \"strict\"?", line + 1),
        ]
    );
}

/// `reasoning` on a model overrides the built-in list of the models that
/// reason unseen, for each of its targets; without it each target's
/// upstream model decides; a value that is not a boolean names the line.
#[test]
fn a_models_reasoning_overrides_the_built_in_list() {
    let two = BASE.replace(
        "name = \"gpt-4o\"\ntargets = [{ provider = \"local\" }]",
        "name = \"gpt-4o\"\ntargets = [{ provider = \"local\", model = \"o3\" }, { provider = \"local\" }]",
    );
    let c = Config::parse("gw.toml", &two, &TestEnv).unwrap();
    let route = c.routes.find(b"gpt-4o").unwrap().1;
    assert_eq!(route.reasoning, None);
    let reasons = |route: &crate::Route, t: usize| route.targets[t].reasons;
    assert!(reasons(route, 0) && !reasons(route, 1));
    for (value, want) in [("true", true), ("false", false)] {
        let set = two.replace("name = \"gpt-4o\"\n", &format!("name = \"gpt-4o\"\nreasoning = {value}\n"));
        let c = Config::parse("gw.toml", &set, &TestEnv).unwrap();
        let route = c.routes.find(b"gpt-4o").unwrap().1;
        assert!((0..2).all(|t| reasons(route, t) == want), "{value}");
    }
    let bad = BASE.replace("name = \"gpt-4o\"\n", "name = \"gpt-4o\"\nreasoning = \"high\"\n");
    let err = Config::parse("gw.toml", &bad, &TestEnv).unwrap_err().to_string();
    assert!(err.contains("gw.toml:8") && err.contains("expected a boolean"), "{err}");
}

#[test]
fn retry_budgets_are_shares() {
    let ok = format!("{BASE}\n[routing]\nretry_budget = 0.1\nretry_budget_min = 3\nretry_after_max_s = 5\n");
    let r = Config::parse("gw.toml", &ok, &TestEnv).unwrap().routing;
    assert_eq!((r.retry_budget_permille, r.retry_budget_min, r.retry_after_max.as_secs()), (100, 3, 5));
    let d = Config::parse("gw.toml", BASE, &TestEnv).unwrap().routing;
    assert_eq!((d.retry_budget_permille, d.retry_budget_min, d.retry_after_max.as_secs()), (200, 10, 60));
    assert!(Config::parse("gw.toml", BASE, &TestEnv).unwrap().routes.all().iter().all(|r| r.affinity));
    let off = BASE.replace("name = \"gpt-4o\"\n", "name = \"gpt-4o\"\naffinity = false\n");
    let c = Config::parse("gw.toml", &off, &TestEnv).unwrap();
    assert!(!c.routes.find(b"gpt-4o").unwrap().1.affinity);
    let own = BASE.replace("name = \"gpt-4o\"\n", "name = \"gpt-4o\"\nfallback_on_status = [400, 200]\n");
    assert!(problems(&own)[0].contains("fallback_on_status 200 is not an error status"), "{:?}", problems(&own));
    let own = BASE.replace("name = \"gpt-4o\"\n", "name = \"gpt-4o\"\nfallback_on_status = [400]\n");
    let c = Config::parse("gw.toml", &own, &TestEnv).unwrap();
    assert_eq!(c.routes.find(b"gpt-4o").unwrap().1.fallback_on_status, Some(vec![400]));
    let marks = BASE.replace("kind = \"mock\"\n", "kind = \"mock\"\nprompt_cache_marks = true\n");
    assert!(problems(&marks)[0].contains("prompt_cache_marks is for anthropic providers"), "{:?}", problems(&marks));
    let bad = format!("{BASE}\n[routing]\nretry_budget = 20\n");
    let line = bad.lines().position(|l| l.starts_with("retry_budget")).unwrap() + 1;
    assert_eq!(
        problems(&bad),
        vec![format!("gw.toml:{line}:16: retry_budget 20 must be a share of requests from 0.0 to 1.0, such as 0.2")]
    );
}

#[test]
fn run_limits_are_read_in_budgets_and_checked() {
    let text = format!(
        "{BASE}\n[[teams]]\nname = \"agents\"\nmodels = [\"*\"]\nbudget = {{ run_usd = 20.0, run_tokens = 9000000, run_requests = 500, run_wall_s = 3600 }}\n"
    );
    let c = Config::parse("gw.toml", &text, &TestEnv).unwrap();
    let run = c.teams[0].budget.run;
    assert_eq!(
        run,
        crate::run::RunLimits {
            cost: Some(20_000_000),
            tokens: Some(9_000_000),
            requests: Some(500),
            wall_ms: Some(3_600_000)
        }
    );
    let bad = format!("{BASE}\n[[teams]]\nname = \"agents\"\nmodels = [\"*\"]\nbudget = {{ run_usd = -1.0 }}\n");
    let line = bad.lines().position(|l| l.starts_with("budget")).unwrap() + 1;
    assert_eq!(
        problems(&bad),
        vec![format!("gw.toml:{line}:22: -1 is not an amount in USD; write a non-negative number such as 2.50")]
    );
    let typo = format!("{BASE}\n[[teams]]\nname = \"agents\"\nmodels = [\"*\"]\nbudget = {{ run_dollars = 1.0 }}\n");
    assert!(problems(&typo)[0].contains("unknown field `run_dollars`"), "{:?}", problems(&typo));
}

#[test]
fn keys_resolve_teams_hashes_expiry_and_narrowing() {
    let hash = crate::keys::hex(&crate::keys::hash_key(b"tg-secret"));
    let text = format!(
        "{BASE}\n[[teams]]\nname = \"search\"\nmodels = [\"*\"]\n\n[[keys]]\nname = \"k1\"\nteam = \"search\"\nsha256 = \"{hash}\"\nexpires = 2027-01-01T00:00:00Z\nmodels = [\"gpt-4o-mini\"]\n"
    );
    let c = Config::parse("gw.toml", &text, &TestEnv).unwrap();
    let k = c.keys.authenticate(b"tg-secret", 0).unwrap();
    assert_eq!(k.name, "k1");
    assert_eq!(k.expires_at, Some(1_798_761_600));
    assert_eq!(k.models.iter().collect::<Vec<_>>(), vec![1]);
    assert!(c.keys.authenticate(b"tg-secret", 1_798_761_600).is_err());

    let bad = text.replace(&hash, "abc").replace("team = \"search\"", "team = \"serch\"");
    let p = problems(&bad);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("sha256 must be 64 hex digits"), "{p:?}");
    let bad = text.replace("team = \"search\"", "team = \"serch\"");
    assert!(problems(&bad)[0].contains("key \"k1\" belongs to unknown team \"serch\"; did you mean \"search\"?"));
    let bad = text.replace("2027-01-01T00:00:00Z", "2027-01-01T00:00:00");
    assert!(problems(&bad)[0].contains("expires has a time but no offset"));
    let narrow = text.replace("models = [\"*\"]", "models = [\"gpt-4o\"]");
    assert!(problems(&narrow)[0].contains("a key can only narrow its team's models"));
    let twice = format!("{text}\n[[keys]]\nname = \"k2\"\nteam = \"search\"\nsha256 = \"{hash}\"\n");
    assert!(problems(&twice)[0].contains("same hash as an earlier key"));
}

#[test]
fn guardrail_profiles_default_override_and_report_mistakes() {
    use crate::guard::{Action, Detector};
    let text = format!(
        "{BASE}\n[[guardrail_profiles]]\nname = \"custom\"\npii = \"flag\"\ninjection = \"off\"\ndetectors = {{ ipv4 = \"off\", card = \"block\" }}\ndeny_words = [\"falcon\"]\n"
    );
    let c = Config::parse("gw.toml", &text, &TestEnv).unwrap();
    let strict = &c.guardrail_profiles[0].spec;
    assert_eq!(strict.actions[Detector::Email as usize], Some(Action::Redact), "PII is redacted by default");
    assert_eq!(strict.actions[Detector::OpenAiKey as usize], Some(Action::Block));
    assert_eq!(strict.actions[Detector::Injection as usize], Some(Action::Block));
    assert!(strict.responses && !strict.fail_open);
    let custom = &c.guardrail_profiles[1].spec;
    assert_eq!(custom.actions[Detector::Email as usize], Some(Action::Flag));
    assert_eq!(custom.actions[Detector::Ipv4 as usize], None);
    assert_eq!(custom.actions[Detector::Card as usize], Some(Action::Block));
    assert_eq!(custom.actions[Detector::Injection as usize], None);
    assert_eq!(custom.custom_action, Some(Action::Block), "deny words block unless told otherwise");

    let bad = format!(
        "{BASE}\n[[guardrail_profiles]]\nname = \"x\"\npii = \"mask\"\ndetectors = {{ emial = \"flag\" }}\ndeny_patterns = [\"(unclosed\"]\non_error = \"maybe\"\n"
    );
    let line = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let found = problems(&bad);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("gw.toml:{}:7: unknown guardrail action \"mask\"", line("pii"))),
        "{found:#?}"
    );
    assert!(found.iter().any(|p| p.contains("unknown detector \"emial\"") && p.contains("email")), "{found:#?}");
    assert!(found.iter().any(|p| p.starts_with(&format!("gw.toml:{}:18:", line("deny_patterns")))
        && p.contains("deny pattern does not compile")));
    assert!(found.iter().any(|p| p.contains("on_error is \"maybe\"")));

    // A pattern too big to compile within the limit is refused at load,
    // never run slowly.
    let huge = format!("{BASE}\n[[guardrail_profiles]]\nname = \"y\"\ndeny_patterns = ['(?:\\w{{100}}){{100}}']\n");
    let found = problems(&huge);
    assert!(found.len() == 1 && found[0].contains("deny pattern does not compile"), "{found:#?}");
}

#[test]
fn cluster_section() {
    let ok = format!(
        "{BASE}\n[cluster]\nredis_urls = [\"redis://10.0.0.5:6380/1\", \"rediss://gw@redis-b\"]\npassword_env = \"SET\"\nnode_id = \"gw-1\"\non_stale = \"closed\"\n"
    );
    let c = Config::parse("gw.toml", &ok, &TestEnv).unwrap().cluster.unwrap();
    assert_eq!((c.servers.len(), c.servers[1].tls, c.node_id.as_str(), c.fail_closed), (2, true, "gw-1", true));
    assert_eq!(c.password, Some(Credential("secret".into())));
    assert_eq!((c.interval.as_millis(), c.stale_after.as_millis()), (100, 5_000));
    assert!(Config::parse("gw.toml", BASE, &TestEnv).unwrap().cluster.is_none(), "no section: one node");
    let strict_alone =
        format!("{BASE}\n[[teams]]\nname = \"t\"\nmodels = [\"*\"]\nbudget = {{ daily_usd = 1.0, strict = true }}\n");
    let p = problems(&strict_alone);
    assert!(
        p.len() == 1 && p[0].contains("strict budgets reserve in the cluster tier's Redis; add a [cluster] section"),
        "{p:?}"
    );

    // No node_id: the host name from the environment, and the port.
    let unnamed =
        format!("[server]\nlisten = \"127.0.0.1:9100\"\n{BASE}\n[cluster]\nredis_urls = [\"redis://10.0.0.5\"]\n");
    let c = Config::parse("gw.toml", &unnamed, &TestEnv).unwrap().cluster.unwrap();
    assert_eq!(c.node_id, "test-host:9100");
    struct Nameless;
    impl Env for Nameless {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn read_file(&self, _: &str) -> std::io::Result<String> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn hostname(&self) -> Option<String> {
            None
        }
    }
    let c = Config::parse("gw.toml", &unnamed, &Nameless).unwrap().cluster.unwrap();
    assert_eq!(c.node_id, "localhost:9100");

    let bad = format!(
        "{BASE}\n[cluster]\nredis_urls = [\"redis://:hunter2@h\"]\nnode_id = \"gw 1\"\non_stale = \"maybe\"\ninterval_ms = 1000\nstale_after_ms = 1500\npassword_env = \"UNSET\"\n"
    );
    let p = problems(&bad);
    let line = |n: &str| BASE.lines().count() + 1 + bad[BASE.len()..].lines().position(|l| l.starts_with(n)).unwrap();
    let expect = [
        (line("redis_urls"), "holds a password; keep secrets out of the file"),
        (line("password_env"), "environment variable UNSET is not set; export it with the Redis password"),
        (line("node_id"), "node_id \"gw 1\" must be letters"),
        (line("stale_after_ms"), "stale_after_ms must be at least twice interval_ms (2000 ms)"),
        (line("on_stale"), "on_stale \"maybe\" must be \"open\""),
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for (line, text) in expect {
        assert!(
            p.iter().any(|m| m.starts_with(&format!("gw.toml:{line}:")) && m.contains(text)),
            "{line} {text}: {p:#?}"
        );
    }
}

#[test]
fn listener_tls() {
    let ok = format!("[server.tls]\ncert_file = \"/run/key\"\nkey_file = \"/run/key\"\n{BASE}");
    let tls = Config::parse("gw.toml", &ok, &TestEnv).unwrap().server.tls.unwrap();
    assert_eq!((tls.cert_file.as_str(), tls.client_ca_file, tls.client_auth_required), ("/run/key", None, true));
    let bad = format!(
        "[server.tls]\ncert_file = \"/nope.pem\"\nkey_file = \"/run/key\"\nclient_auth = \"sometimes\"\n{BASE}"
    );
    let p = problems(&bad);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("gw.toml:2:") && p[0].contains("cannot read [server.tls] cert_file \"/nope.pem\""),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m.starts_with("gw.toml:4:")
            && m.contains("client_auth \"sometimes\" must be \"required\" or \"optional\"")),
        "{p:#?}"
    );
    assert!(p.iter().any(|m| m.contains("client_auth needs client_ca_file")), "{p:#?}");
}

#[test]
fn admin_tokens_are_digests() {
    let token = crate::keys::hex(&crate::keys::hash_key(b"tga-x"));
    let ok = format!("[server]\nadmin_tokens = [\"{token}\"]\n{BASE}");
    let c = Config::parse("gw.toml", &ok, &TestEnv).unwrap();
    assert_eq!(c.server.admin_tokens, vec![crate::keys::hash_key(b"tga-x")]);
    // The token itself pasted where its digest belongs: refused, with the fix.
    let pasted = format!("[server]\nadmin_tokens = [\"tga-x\"]\n{BASE}");
    let p = problems(&pasted);
    assert!(p[0].starts_with("gw.toml:2:17:") && p[0].contains("keygen --admin"), "{p:?}");
}

#[test]
fn viewer_tokens_are_digests_of_configured_teams() {
    let hex = |t: &[u8]| crate::keys::hex(&crate::keys::hash_key(t));
    let with = |viewers: &str| {
        format!(
            "[server]\nadmin_tokens = [\"{}\"]\n{BASE}\n[[teams]]\nname = \"a\"\nmodels = [\"*\"]\n{viewers}",
            hex(b"tga-x")
        )
    };
    let ok = with(&format!("\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"a\"]\n", hex(b"tgv-y")));
    let c = Config::parse("gw.toml", &ok, &TestEnv).unwrap();
    assert_eq!(
        c.server.viewers,
        [crate::config::Viewer { token: crate::keys::hash_key(b"tgv-y"), teams: vec!["a".into()], bodies: false }]
    );

    let cases = [
        ("token = \"tgv-y\"\nteams = [\"a\"]".to_string(), "keygen --viewer"),
        (format!("token = \"{}\"\nteams = [\"b\"]", hex(b"tgv-y")), "viewer token team \"b\" is not a [[teams]] name"),
        (format!("token = \"{}\"\nteams = []", hex(b"tgv-y")), "needs teams"),
        (format!("token = \"{}\"\nteams = [\"a\"]", hex(b"tga-x")), "also an admin token's"),
    ];
    let alone = format!("{BASE}\n[[teams]]\nname = \"a\"\nmodels = [\"*\"]\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"a\"]\n", hex(b"tgv-y"));
    assert!(problems(&alone).iter().any(|m| m.contains("need an admin token too")), "{:?}", problems(&alone));
    for (entry, says) in cases {
        let p = problems(&with(&format!("\n[[server.viewer_tokens]]\n{entry}\n")));
        assert!(p.iter().any(|m| m.starts_with("gw.toml:") && m.contains(says)), "{entry}: {p:?}");
    }
}

#[test]
fn capture_is_per_team_and_retention_needs_records() {
    let teams = "\n[[teams]]\nname = \"a\"\nmodels = [\"*\"]\n\n[[teams]]\nname = \"b\"\nmodels = [\"*\"]\ncapture_bodies = true\n";
    let c = Config::parse("gw.toml", &format!("{BASE}{teams}"), &TestEnv).unwrap();
    assert_eq!(c.teams.iter().map(|t| t.capture).collect::<Vec<_>>(), [false, true]);
    assert!(c.capture_guard.is_some(), "one team captures: the redacting guard is built");
    let on = format!(
        "[logging]\ndir = \"/tmp/x\"\ncapture_bodies = true\ncapture_retention_days = 30\n{BASE}{}",
        teams.replace("capture_bodies = true", "capture_bodies = false")
    );
    let c = Config::parse("gw.toml", &on, &TestEnv).unwrap();
    assert_eq!(c.teams.iter().map(|t| t.capture).collect::<Vec<_>>(), [true, false]);
    assert_eq!(c.logging.capture_retention_days, Some(30));
    for bad in ["[logging]\ncapture_retention_days = 3\n", "[logging]\ndir = \"/tmp/x\"\ncapture_retention_days = 0\n"]
    {
        let p = problems(&format!("{bad}{BASE}"));
        assert!(p.iter().any(|m| m.starts_with("gw.toml:") && m.contains("capture_retention_days")), "{bad}: {p:?}");
    }
}

#[test]
fn hosted_tools_are_per_team_by_name_or_prefix() {
    let teams = "\n[[teams]]\nname = \"a\"\nmodels = [\"*\"]\n\n[[teams]]\nname = \"b\"\nmodels = [\"*\"]\nhosted_tools = [\"web_search\", \"mcp\"]\n\n[[teams]]\nname = \"c\"\nmodels = [\"*\"]\nhosted_tools = [\"*\"]\n";
    let c = Config::parse("gw.toml", &format!("{BASE}{teams}"), &TestEnv).unwrap();
    let allows = |team: usize, tool: &str| c.teams[team].allows_tool(tool.as_bytes());
    assert!(!allows(0, "web_search"), "none by default");
    assert!(allows(1, "web_search") && allows(1, "web_search_20250305") && allows(1, "web_search_options"));
    assert!(allows(1, "mcp") && allows(1, "mcp_servers") && !allows(1, "code_interpreter"));
    assert!(allows(2, "code_interpreter") && allows(2, "image_generation"));
    let tiers = teams.replace("hosted_tools = [\"*\"]", "service_tiers = [\"priority\"]");
    let c = Config::parse("gw.toml", &format!("{BASE}{tiers}"), &TestEnv).unwrap();
    for (team, tier, allowed) in
        [(0, "auto", true), (0, "flex", true), (0, "standard_only", true), (0, "priority", false), (0, "scale", false)]
            .into_iter()
            .chain([(2, "priority", true), (2, "scale", false), (2, "Priority", false)])
    {
        assert_eq!(c.teams[team].allows_tier(tier.as_bytes()), allowed, "team {team}, {tier}");
    }
    let p = problems(&format!("{BASE}{}", teams.replace("hosted_tools = [\"*\"]", "hosted_tools = [\"\"]")));
    assert!(
        p.iter().any(|m| m.starts_with("gw.toml:") && m.contains("team \"c\"") && m.contains("\"web_search\"")),
        "{p:?}"
    );
}

#[test]
fn clickhouse_defaults_and_mistakes() {
    let logging = "[logging]\ndir = \"/tmp/x\"\n";
    let c = Config::parse("gw.toml", &format!("{logging}[clickhouse]\nurl = \"http://ch:8123/\"\n{BASE}"), &TestEnv)
        .unwrap();
    let ch = c.clickhouse.unwrap();
    assert_eq!(
        (ch.authority.as_str(), ch.database.as_str(), ch.table.as_str()),
        ("ch:8123", "default", "tollgate_requests")
    );
    assert!(ch.create_table && ch.user.is_none() && ch.password.is_none());
    assert_eq!(ch.queue_bytes_max, 64 << 20);
    for (bad, needle) in [
        ("url = \"https://ch:8443\"", "must be http://host:port"),
        ("url = \"http://ch:8123/db\"", "must be http://host:port"),
        ("url = \"http://u@ch:8123\"", "must be http://host:port"),
        ("url = \"http://ch:8123\"\ndatabase = \"1db\"", "letters, digits and _"),
        ("url = \"http://ch:8123\"\ntable = \"t`x\"", "letters, digits and _"),
        ("url = \"http://ch:8123\"\nuser = \"a b\"", "user"),
        ("url = \"http://ch:8123\"\nqueue_bytes_max = 1000", "queue_bytes_max"),
        ("url = \"http://ch:8123\"\ntimeout_ms = 0", "timeout_ms"),
    ] {
        let p = problems(&format!("{logging}[clickhouse]\n{bad}\n{BASE}"));
        assert!(p.iter().any(|m| m.starts_with("gw.toml:") && m.contains(needle)), "{bad}: {p:?}");
    }
    let p = problems(&format!("[clickhouse]\nurl = \"http://ch:8123\"\n{BASE}"));
    assert!(p.iter().any(|m| m.contains("set [logging] dir")), "{p:?}");
}

#[test]
fn the_alert_webhook_is_plain_http_with_a_port() {
    let ok = format!("[alerts]\nwebhook_url = \"http://hooks:9000/budget\"\n{BASE}");
    assert_eq!(
        Config::parse("gw.toml", &ok, &TestEnv).unwrap().alert_webhook.as_deref(),
        Some("http://hooks:9000/budget")
    );
    for bad in
        ["https://hooks:9000/x", "http://hooks/x", "http://u@hooks:9000/x", "http://hooks:9000/a b", "http://:9000/x"]
    {
        let p = problems(&format!("[alerts]\nwebhook_url = \"{bad}\"\n{BASE}"));
        assert!(
            p.iter().any(|m| m.starts_with("gw.toml:") && m.contains("must be http://host:port/path")),
            "{bad}: {p:?}"
        );
    }
}

#[test]
fn telemetry_defaults_and_mistakes() {
    let c = Config::parse("gw.toml", &format!("[telemetry]\notlp_endpoint = \"http://otel:4318\"\n{BASE}"), &TestEnv)
        .unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(
        (t.authority.as_str(), t.path.as_str(), t.service_name.as_str()),
        ("otel:4318", "/v1/traces", "tollgate")
    );
    assert_eq!((t.sample_ratio, t.queue_bytes_max), (1.0, 16 << 20));
    let c = Config::parse(
        "gw.toml",
        &format!("[telemetry]\notlp_endpoint = \"http://10.0.0.2:4318/otlp/v1/traces\"\nsample_ratio = 0.1\n{BASE}"),
        &TestEnv,
    )
    .unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!((t.path.as_str(), t.sample_ratio), ("/otlp/v1/traces", 0.1));
    assert!(Config::parse("gw.toml", BASE, &TestEnv).unwrap().telemetry.is_none());
    for (bad, needle) in [
        ("otlp_endpoint = \"grpc://otel:4317\"", "must be http://host:port"),
        ("otlp_endpoint = \"http://:4318\"", "needs a host and a port"),
        ("otlp_endpoint = \"http://otel:4318\"\nsample_ratio = -0.1", "sample_ratio"),
        ("otlp_endpoint = \"http://otel:4318\"\ntimeout_ms = 0", "timeout_ms"),
        ("otlp_endpoint = \"http://otel:4318\"\nservice_name = \" \"", "service_name"),
        ("otlp_endpoint = \"http://otel:4318\"\nbatch = 3", "unknown field"),
        ("otlp_endpoint = \"http://otel:4318/v1/traces HTTP/1.1\\r\\nx: y\"", "control characters"),
        ("otlp_endpoint = \"http://user@otel:4318\"", "user@"),
    ] {
        let p = problems(&format!("[telemetry]\n{bad}\n{BASE}"));
        assert!(p.iter().any(|m| m.starts_with("gw.toml:") && m.contains(needle)), "{bad}: {p:?}");
    }
}

#[test]
fn classifiers_resolve_their_provider_or_route_and_report_mistakes() {
    let good = format!(
        "{BASE}\n[[guardrail_profiles]]\nname = \"c\"\n\n[[guardrail_profiles.classifiers]]\nname = \"pg\"\nkind = \"tei\"\nprovider = \"local\"\ntimeout_ms = 120\non_error = \"block\"\n\n[[guardrail_profiles.classifiers]]\nname = \"lg\"\nkind = \"chat\"\nroute = \"gpt-4o\"\n"
    );
    let c = Config::parse("gw.toml", &good, &TestEnv).unwrap();
    let cs = &c.guardrail_profiles.iter().find(|p| p.name == "c").unwrap().classifiers;
    assert_eq!(cs.len(), 2);
    assert_eq!(
        (cs[0].kind, cs[0].path.as_str(), cs[0].timeout),
        (ClassifierKind::Tei, "/predict", Duration::from_millis(120))
    );
    assert!(!cs[0].fail_open && cs[1].fail_open, "a classifier lets requests through unless told to block");
    assert_eq!((cs[1].path.as_str(), cs[1].model.as_deref()), ("/chat/completions", Some("gpt-4o")));

    let bad = format!(
        "{BASE}\n[[guardrail_profiles]]\nname = \"c\"\n\n[[guardrail_profiles.classifiers]]\nname = \"a\"\nkind = \"tei\"\nprovider = \"locl\"\n\n[[guardrail_profiles.classifiers]]\nname = \"b\"\nkind = \"magic\"\n\n[[guardrail_profiles.classifiers]]\nname = \"c\"\nkind = \"chat\"\nroute = \"gpt-5\"\n\n[[guardrail_profiles.classifiers]]\nname = \"d\"\nkind = \"tei\"\nprovider = \"local\"\nthreshold = 1.5\n"
    );
    let line = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let found = problems(&bad);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found.iter().any(|p| p.starts_with(&format!("gw.toml:{}:", line("provider = \"locl\"")))
            && p.contains("unknown provider \"locl\"")
            && p.contains("local")),
        "{found:#?}"
    );
    assert!(found.iter().any(|p| p.contains("unknown classifier kind \"magic\"")), "{found:#?}");
    assert!(found.iter().any(|p| p.contains("unknown model \"gpt-5\"")), "{found:#?}");
    assert!(found.iter().any(|p| p.contains("threshold 1.5 must be between 0 and 1")), "{found:#?}");
}

/// The base config with a profile `c` holding one classifier (`body`: the
/// `[[guardrail_profiles.classifiers]]` table's lines).
fn with_classifier(body: &str) -> String {
    format!("{BASE}\n[[guardrail_profiles]]\nname = \"c\"\n\n[[guardrail_profiles.classifiers]]\n{body}")
}

/// Profile `c`'s classifiers.
fn classifiers_of(c: &Config) -> &[crate::config::Classifier] {
    &c.guardrail_profiles.iter().find(|p| p.name == "c").unwrap().classifiers
}

#[test]
fn a_builtin_classifier_needs_nothing_to_reach_and_says_what_it_cannot_take() {
    let classifier = |extra: &str| with_classifier(&format!("name = \"model\"\nkind = \"builtin\"\n{extra}"));
    let c = Config::parse("gw.toml", &classifier(""), &TestEnv).unwrap();
    let cs = classifiers_of(&c);
    assert_eq!((cs[0].kind, cs[0].model.as_deref()), (ClassifierKind::Builtin, Some("injection")));
    assert_eq!(cs[0].threshold, f64::from(crate::guard::model::THRESHOLD), "the measured default");
    let fine = "threshold = 0.6\nmodel = \"injection\"\nanswers = true\nstream_window_bytes = 512\n";
    let c = Config::parse("gw.toml", &classifier(fine), &TestEnv).unwrap();
    assert_eq!(classifiers_of(&c)[0].threshold, 0.6);
    for (extra, needle) in [
        ("provider = \"local\"\n", "provider does not apply"),
        ("path = \"/predict\"\n", "path does not apply"),
        ("model = \"prompt-guard\"\n", "the built-in model is \"injection\", not \"prompt-guard\""),
        ("timeout_ms = 50\n", "timeout_ms does not apply"),
        ("on_error = \"block\"\n", "on_error does not apply"),
        ("text_bytes_max = 65537\n", "reads at most 65536 bytes"),
        ("answers = true\nstream_window_bytes = 511\ntext_bytes_max = 8192\n", "at least a sixteenth of it (512)"),
    ] {
        let text = classifier(extra);
        let found = problems(&text);
        let first = extra.lines().find(|l| !l.starts_with("answers")).unwrap();
        let line = text.lines().position(|l| l == first).unwrap() + 1;
        let line = if needle.contains("built-in model is") { line - 1 } else { line };
        assert!(
            found.iter().any(|p| p.starts_with(&format!("gw.toml:{line}:")) && p.contains(needle)),
            "{extra}: {found:#?}"
        );
    }
}

#[test]
fn a_stream_window_needs_answers_and_a_size_in_range() {
    let classifier =
        |extra: &str| with_classifier(&format!("name = \"m\"\nkind = \"moderations\"\nprovider = \"local\"\n{extra}"));
    let c = Config::parse("gw.toml", &classifier("answers = true\nstream_window_bytes = 256\n"), &TestEnv).unwrap();
    let cs = classifiers_of(&c);
    assert_eq!((cs[0].answers, cs[0].stream_window_bytes), (true, 256));
    let c = Config::parse("gw.toml", &classifier("answers = true\n"), &TestEnv).unwrap();
    assert_eq!(classifiers_of(&c)[0].stream_window_bytes, 1024);
    let found = problems(&classifier("stream_window_bytes = 256\n"));
    assert!(found.iter().any(|p| p.contains("only with answers = true")), "{found:#?}");
    for bad in ["15", "65537"] {
        let found = problems(&classifier(&format!("answers = true\nstream_window_bytes = {bad}\n")));
        assert!(found.iter().any(|p| p.contains("must be between 16 and 65536")), "{bad}: {found:#?}");
    }
}

#[test]
fn national_identifiers_are_off_until_named() {
    use crate::guard::{Action, Detector};
    let text = format!(
        "{BASE}\n[[guardrail_profiles]]\nname = \"br\"\npii = \"redact\"\ndetectors = {{ br_cpf = \"redact\", uk_nino = \"flag\" }}\n"
    );
    let c = Config::parse("gw.toml", &text, &TestEnv).unwrap();
    let br = &c.guardrail_profiles.iter().find(|p| p.name == "br").unwrap().spec;
    assert_eq!(br.actions[Detector::BrCpf as usize], Some(Action::Redact));
    assert_eq!(br.actions[Detector::UkNino as usize], Some(Action::Flag));
    assert_eq!(br.actions[Detector::FrNir as usize], None, "pii = \"redact\" does not switch national ids on");
    let found =
        problems(&format!("{BASE}\n[[guardrail_profiles]]\nname = \"x\"\ndetectors = {{ br_cfp = \"redact\" }}\n"));
    assert!(found.iter().any(|p| p.contains("unknown detector \"br_cfp\"") && p.contains("br_cpf")), "{found:#?}");
}

#[test]
fn the_cache_section_is_checked_and_defaulted() {
    let config = Config::parse("gw.toml", &format!("{BASE}\n[cache]\n"), &TestEnv).expect("valid");
    let cache = config.cache.expect("a cache");
    assert_eq!((cache.bytes_max, cache.entry_bytes_max, cache.ttl.as_secs()), (64 << 20, 1 << 20, 300));
    assert!(!cache.per_key && !cache.sampled);
    assert!(config.teams.iter().all(|t| t.cache) && config.routes.all().iter().all(|r| r.cache));
    let off = Config::parse("gw.toml", &format!("{BASE}\n[cache]\nenabled = false\n"), &TestEnv).expect("valid");
    assert!(off.cache.is_none());
    let bad =
        problems(&format!("{BASE}\n[cache]\nbytes_max = 100\nentry_bytes_max = 0\nttl_s = 0\nscope = \"tenant\"\n"));
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(bad[0].contains("bytes_max 100 is too small"), "{bad:?}");
    assert!(bad[1].contains("entry_bytes_max 0 must be between 1 and bytes_max"), "{bad:?}");
    assert!(bad[2].contains("ttl_s 0 must be between 1 and 2592000"), "{bad:?}");
    assert!(bad[3].contains("scope \"tenant\" is not a cache scope; write \"team\" or \"key\""), "{bad:?}");
    // cache = true on a team or model without [cache]: named, with the fix.
    let text =
        BASE.replacen("targets = [{ provider = \"local\" }]", "targets = [{ provider = \"local\" }]\ncache = true", 1);
    let missing = problems(&format!("{text}\n[[teams]]\nname = \"t\"\nmodels = [\"*\"]\ncache = true\n"));
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        missing.iter().all(|p| p.contains("cache = true needs the answer cache; add a [cache] section")),
        "{missing:?}"
    );
    assert!(missing[0].starts_with("gw.toml:") && missing[1].starts_with("gw.toml:"), "{missing:?}");
}

#[test]
fn semantic_lookups_name_a_model_that_embeds() {
    let ok = Config::parse(
        "gw.toml",
        &format!("{BASE}\n[cache]\nsemantic_model = \"gpt-4o\"\nsemantic_threshold = 0.9\n"),
        &TestEnv,
    )
    .expect("valid");
    let sem = ok.cache.and_then(|c| c.semantic).expect("semantic lookups");
    assert_eq!((sem.route, sem.threshold, sem.entries_max, sem.timeout.as_millis()), (0, 0.9, 10_000, 1_000));
    let bad = problems(&format!("{BASE}\n[cache]\nsemantic_model = \"gpt-4\"\nsemantic_threshold = 0.2\n"));
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("semantic_model \"gpt-4\" is not a configured model; did you mean"), "{bad:?}");
    assert!(bad[1].contains("semantic_threshold 0.2 must be a cosine similarity between 0.5 and 1.0"), "{bad:?}");
    let orphan = problems(&format!("{BASE}\n[cache]\nsemantic_threshold = 0.9\n"));
    assert!(
        orphan.iter().any(|p| p.contains("semantic_threshold applies to semantic lookups; add semantic_model")),
        "{orphan:?}"
    );
}

/// A configuration error names the file, the line and the fix, never the
/// secret it is about: a URL's password, a webhook's token in its path or
/// query, a key pasted where its variable's name goes (found by a review:
/// the messages went to the journal with the password in them).
#[test]
fn config_errors_never_repeat_a_secret() {
    let cases = [
        "[cluster]\nredis_urls = [\"redis://:hunter2@h:6379\"]\nnode_id = \"n\"\n".to_string(),
        "[cluster]\nredis_urls = [\"redis://u:hun/ter2@h:6379\"]\nnode_id = \"n\"\n".to_string(),
        "[clickhouse]\nurl = \"http://user:hunter2@ch:8123\"\n".to_string(),
        "[clickhouse]\nurl = \"https://ch:8443/?password=hunter2\"\n".to_string(),
        "[telemetry]\notlp_endpoint = \"http://u:hunter2@otel:4318/v1/traces\"\n".to_string(),
        "[alerts]\nwebhook_url = \"https://hooks.example/services/T0/B0/hunter2\"\n".to_string(),
        BASE.replace(
            "kind = \"mock\"",
            "kind = \"openai\"\nbase_url = \"https://user:hunter2@api.example/v1\"\napi_key_env = \"K\"",
        ),
        BASE.replace(
            "kind = \"mock\"",
            "kind = \"openai\"\nbase_url = \"https://api.example/v1?key=hunter2 x\"\napi_key_env = \"K\"",
        ),
        BASE.replace("kind = \"mock\"", "kind = \"openai\"\napi_key_env = \"sk-proj-hunter2\""),
        BASE.replace(
            "kind = \"mock\"",
            "kind = \"openai\"\nbase_url = \"https://u:hun/ter2@api.example/v1\"\napi_key_env = \"K\"",
        ),
    ];
    for case in cases {
        let text =
            if case.starts_with('[') && !case.contains("[[providers]]") { format!("{BASE}\n{case}") } else { case };
        let p = problems(&text);
        assert!(!p.is_empty(), "refused: {text}");
        for problem in &p {
            assert!(
                !problem.contains("hunter2") && !problem.contains("hun/") && !problem.contains("ter2"),
                "{problem}"
            );
            assert!(problem.starts_with("gw.toml:"), "names the file and line: {problem}");
        }
    }
    assert_eq!(super::report::shown_url("https://u:p@h:1/a/b?c"), "https://***@h:1/***");
    assert_eq!(super::report::shown_url("redis://u:p/q@h:1/0"), "redis://***@h:1/***");
    assert_eq!(super::report::shown_url("http://h:8123"), "http://h:8123");
    assert_eq!(super::report::shown_url("http://h:8123/"), "http://h:8123/");
    assert_eq!(super::report::shown_url("no scheme"), "***");
}
