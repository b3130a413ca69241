//! `rag`: the bundled RAG example. See `docs/rag-example.md`.
//!
//! ```text
//! rag "How does spanline propagate context over Kafka?"     one question
//! rag --requests 40 --concurrency 4                          load mode over the question set
//! rag worker retrieval --bootstrap-servers HOST:PORT         a retrieval worker process
//! rag worker rerank --listen 127.0.0.1:50061                 a rerank worker process
//! rag chunks                                                 the corpus' chunk ids
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spanline::core::{RequestContext, Telemetry};
use spanline::telemetry::{TelemetryBuilder, TelemetryGuard};
use spanline_rag::app::{self, REQUEST_TOPIC, Settings};
use spanline_rag::corpus::Corpus;
use spanline_rag::report::{self, Question};
use spanline_rag::{Models, RagError, Stack};

const USAGE: &str = "\
usage:
  rag [OPTIONS] [QUESTION]                 answer one question (default: a bundled one)
  rag [OPTIONS] --requests N [--concurrency C]
                                           load mode over the bundled question set
  rag worker retrieval [OPTIONS]           serve retrieval over Kafka (a group member)
  rag worker rerank [--listen ADDR]        serve reranking over gRPC
  rag chunks [--corpus DIR]                list the corpus' chunk ids

options:
  --corpus DIR               Markdown/text folder to answer from (default: this repository's docs/)
  --bootstrap-servers HOSTS  Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS, else an embedded broker)
  --rerank-worker URL        a running rerank worker (default: one in this process)
  --external-retrieval       start no retrieval worker here (worker processes serve the topic)
  --openai-url URL           an OpenAI-compatible server (…/v1) instead of SmolLM2 in-process
  --openai-model NAME        its model name
  --max-tokens N             longest answer (default 48)
  --strategy S               how answers are made: passages, evidence, prompt, decoding,
                             fallback (default; each adds a technique to the one before)
  --reranker R               what the rerank worker runs: maxsim-fused (default), maxsim,
                             bi-encoder, none
  --rerank-timeout-ms N      rerank deadline; after it the fused order is used (default 10000)
  --html PATH                waterfall page (default: rag-waterfall.html)
  --prometheus ADDR          serve /metrics on ADDR
  --listen ADDR              (worker rerank) where to listen (default 127.0.0.1:50061)

Traces also go wherever the standard OTEL_* variables say (OTLP, console).";

#[derive(Debug, Default)]
struct Args {
    command: Vec<String>,
    settings: Settings,
    requests: Option<usize>,
    concurrency: usize,
    html: Option<PathBuf>,
    prometheus: Option<SocketAddr>,
    listen: Option<SocketAddr>,
}

fn parse(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        concurrency: 1,
        ..Args::default()
    };
    let mut openai_url = None;
    let mut openai_model = None;
    while let Some(arg) = raw.next() {
        let mut value = |name: &str| raw.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--corpus" => a.settings.corpus = value("--corpus")?.into(),
            "--bootstrap-servers" => {
                a.settings.bootstrap_servers = Some(value("--bootstrap-servers")?)
            }
            "--rerank-worker" => a.settings.rerank_worker = Some(value("--rerank-worker")?),
            "--external-retrieval" => a.settings.external_retrieval = true,
            "--openai-url" => openai_url = Some(value("--openai-url")?),
            "--openai-model" => openai_model = Some(value("--openai-model")?),
            "--max-tokens" => {
                let v = number("--max-tokens", value("--max-tokens")?)?;
                a.settings.max_tokens = u32::try_from(v).map_err(|_| "--max-tokens: too large")?;
            }
            "--strategy" => a.settings.strategy = value("--strategy")?.parse()?,
            "--reranker" => a.settings.reranker = value("--reranker")?.parse()?,
            "--rerank-timeout-ms" => {
                let v = number("--rerank-timeout-ms", value("--rerank-timeout-ms")?)?;
                a.settings.rerank_timeout = Duration::from_millis(v);
            }
            "--requests" => a.requests = Some(number("--requests", value("--requests")?)? as usize),
            "--concurrency" => {
                a.concurrency = (number("--concurrency", value("--concurrency")?)? as usize).max(1)
            }
            "--html" => a.html = Some(value("--html")?.into()),
            "--prometheus" => {
                let v = value("--prometheus")?;
                a.prometheus = Some(
                    v.parse()
                        .map_err(|_| format!("--prometheus: bad address {v:?}"))?,
                )
            }
            "--listen" => {
                let v = value("--listen")?;
                a.listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: bad address {v:?}"))?,
                )
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => a.command.push(arg),
        }
    }
    a.settings.openai = match (openai_url, openai_model) {
        (Some(u), Some(m)) => Some((u, m)),
        (None, None) => None,
        _ => return Err("--openai-url and --openai-model go together".into()),
    };
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("rag: {msg}\n");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rag: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rag: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), RagError> {
    let words: Vec<&str> = args.command.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["worker", "retrieval"] => retrieval_worker(&args).await,
        ["worker", "rerank"] => rerank_worker(&args).await,
        ["worker", ..] => Err(RagError::Other("workers: `retrieval` or `rerank`".into())),
        ["chunks"] => {
            let corpus = Corpus::load(&args.settings.corpus)?;
            let mut out = std::io::stdout().lock();
            for c in &corpus.chunks {
                let words = c.text.split_whitespace().count();
                if writeln!(out, "{}\t{words} words", c.id).is_err() {
                    break; // the reader went away (`| head`)
                }
            }
            Ok(())
        }
        _ if args.requests.is_some() => load(&args).await,
        rest => {
            let question = if rest.is_empty() {
                "How does spanline propagate trace context over Kafka?".to_string()
            } else {
                rest.join(" ")
            };
            ask(&args, &question).await
        }
    }
}

/// Telemetry for this process: the in-memory recorder (for the reports),
/// Prometheus, and OTLP or the console only when `OTEL_*` asks for them.
fn telemetry(service: &str, recorder: usize, args: &Args) -> Result<TelemetryGuard, RagError> {
    let err = |e: spanline::telemetry::TelemetryError| RagError::Other(e.to_string());
    let mut builder = TelemetryBuilder::from_env()
        .map_err(err)?
        .service_name(service)
        .recorder(recorder)
        .prometheus(true)
        .quiet_unless_configured();
    if let Some(addr) = args.prometheus {
        builder = builder.prometheus_listener(addr);
    }
    builder.install().map_err(err)
}

struct Session {
    guard: TelemetryGuard,
    stack: Stack,
    corpus: Arc<Corpus>,
}

impl Session {
    /// The pipeline over this session's workers.
    async fn pipeline(
        &self,
        settings: &Settings,
        models: &Models,
        on_token: spanline::core::adapters::TokenSink,
    ) -> Result<
        app::Rag<
            impl spanline::core::Step<Input = spanline::core::Query, Output = spanline_rag::Answer>
            + use<>,
        >,
        RagError,
    > {
        let t = self.guard.telemetry();
        let dense = app::connect_dense(settings, &t, &self.stack.kafka).await?;
        app::pipeline(
            settings,
            &t,
            models,
            &self.corpus,
            dense,
            &self.stack.rerank_uri,
            on_token,
        )
    }

    /// The critical-path reports of the `requests` finished so far, and
    /// their aggregate.
    async fn reports(
        &self,
        requests: usize,
    ) -> Result<
        (
            Vec<spanline_critpath::TraceReport>,
            spanline_critpath::Stats,
        ),
        RagError,
    > {
        let recorder = self
            .guard
            .recorder()
            .ok_or(RagError::Other("no recorder".into()))?;
        report::settle(&recorder, requests, &format!("process {REQUEST_TOPIC}")).await;
        let reports = report::reports(&recorder);
        let stats = report::aggregate(&reports);
        Ok((reports, stats))
    }
}

async fn start(args: &Args, recorder: usize) -> Result<(Session, Models), RagError> {
    let guard = telemetry("spanline-rag", recorder, args)?;
    let t = guard.telemetry();
    let started = Instant::now();
    let corpus = Arc::new(Corpus::load(&args.settings.corpus)?);
    for (file, why) in &corpus.skipped {
        eprintln!("rag: skipped {}: {why}", file.display());
    }
    let models = Models::load(&args.settings)?;
    let stack = Stack::start(&args.settings, &t, &models, &corpus).await?;
    eprintln!(
        "rag: {} chunks from {} indexed, workers ready in {:.1} s",
        corpus.chunks.len(),
        args.settings.corpus.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((
        Session {
            guard,
            stack,
            corpus,
        },
        models,
    ))
}

async fn ask(args: &Args, question: &str) -> Result<(), RagError> {
    let (session, models) = start(args, 10_000).await?;
    let rag = session
        .pipeline(
            &args.settings,
            &models,
            Arc::new(|piece: &str| {
                print!("{piece}");
                let _ = std::io::stdout().flush();
            }),
        )
        .await?;
    println!("Q: {question}");
    print!("Generated: ");
    let answer = rag.ask(question, &RequestContext::new()).await?;
    println!("\nA: {}", answer.text);
    if answer.extractive {
        println!(
            "   (extractive: the generated answer was not supported by the passages; this is the best evidence sentence)"
        );
    }
    println!(
        "   groundedness {:.2} (generated text {:.2})",
        answer.groundedness, answer.generated_groundedness
    );
    println!("\nSources:");
    for c in &answer.citations {
        let mark = if c.cited { "cited" } else { "context" };
        println!("  [{}] {}  ({mark})", c.marker, c.id);
    }
    let (reports, stats) = session.reports(1).await?;
    if let Some(r) = reports.first() {
        println!("\nCritical path\n{}", report::trace(r));
    }
    println!("\nPer-stage latency\n{}", report::aggregate_text(&stats));
    write_html(args, reports.first(), &stats)?;
    session.stack.stop().await?;
    let _ = session.guard.shutdown();
    Ok(())
}

fn write_html(
    args: &Args,
    trace: Option<&spanline_critpath::TraceReport>,
    stats: &spanline_critpath::Stats,
) -> Result<(), RagError> {
    let path = args
        .html
        .clone()
        .unwrap_or_else(|| PathBuf::from("rag-waterfall.html"));
    std::fs::write(&path, report::waterfall(trace, Some(stats)))
        .map_err(|e| RagError::Other(format!("writing {}: {e}", path.display())))?;
    println!("Waterfall: {}", path.display());
    Ok(())
}

async fn load(args: &Args) -> Result<(), RagError> {
    let n = args.requests.unwrap_or(0);
    let questions: Vec<Question> = report::questions();
    if questions.is_empty() || n == 0 {
        return Err(RagError::Other("nothing to run".into()));
    }
    let (session, models) = start(args, 64 * n + 10_000).await?;
    let rag = Arc::new(
        session
            .pipeline(&args.settings, &models, Arc::new(|_: &str| {}))
            .await?,
    );
    println!(
        "Load: {n} requests, concurrency {}, {} questions",
        args.concurrency,
        questions.len()
    );
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(n) {
        let (rag, next, questions) = (rag.clone(), next.clone(), questions.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return results;
                }
                let q = &questions[i % questions.len()];
                let out = rag.ask(&q.question, &RequestContext::new()).await;
                results.push((i % questions.len(), out));
            }
        }));
    }
    let mut answers = Vec::new();
    let mut failures = 0;
    for task in tasks {
        for (qi, out) in task.await.map_err(|e| RagError::Other(e.to_string()))? {
            match out {
                Ok(a) => answers.push((qi, a)),
                Err(e) => {
                    failures += 1;
                    eprintln!("rag: request failed: {e}");
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (reports, stats) = session.reports(n).await?;
    println!(
        "\n{} ok, {failures} failed in {elapsed:.1} s: {:.2} requests/s",
        answers.len(),
        answers.len() as f64 / elapsed
    );
    println!("\n{}", report::aggregate_text(&stats));
    let quality = report::quality(
        answers
            .iter()
            .map(|(qi, a)| (&questions[*qi].expected[..], &a.ranked[..])),
        args.settings.keep,
    );
    println!(
        "Retrieval quality over {} answers: recall@{} {:.3}, MRR {:.3}",
        quality.questions, quality.k, quality.recall_at_k, quality.mrr
    );
    answers.sort_by_key(|(qi, _)| *qi);
    println!("\nAnswers (✓ states the fact; E = extractive fallback):");
    for (qi, a) in &answers {
        let q = &questions[*qi];
        let mark = if q.is_answered_by(&a.text) {
            "✓"
        } else {
            "✗"
        };
        let kind = if a.extractive { "E" } else { " " };
        println!(
            "  {mark} {kind} {:<60.60} → {}",
            q.question,
            one_line(&a.text, 100)
        );
    }
    let answered = report::answer_quality(answers.iter().map(|(qi, a)| (&questions[*qi], a)));
    println!(
        "\nAnswer quality over {} answers (strategy {:?}, reranker {:?}): accuracy {:.3} ({} correct), \
         groundedness {:.3} (generated text {:.3}), citing a passage {}, citing an expected chunk {}, extractive {}",
        answered.answers,
        args.settings.strategy,
        args.settings.reranker,
        answered.accuracy(),
        answered.correct,
        answered.groundedness,
        answered.generated_groundedness,
        answered.citing,
        answered.citing_expected,
        answered.extractive
    );
    let slowest = reports.iter().max_by_key(|r| r.duration_ns);
    write_html(args, slowest, &stats)?;
    if let Some(prom) = session.guard.prometheus() {
        // The fallback stage's `ok` samples: requests whose rerank missed
        // its deadline and kept the fused order.
        let fallbacks: f64 = prom
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("spanline_stage_duration_count")
                    && l.contains("stage=\"fused-order\"")
                    && l.contains("outcome=\"ok\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!(
            "Rerank fell back to the fused order in {fallbacks} of {} requests",
            answers.len()
        );
    }
    session.stack.stop().await?;
    let _ = session.guard.shutdown();
    Ok(())
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn retrieval_worker(args: &Args) -> Result<(), RagError> {
    let guard = telemetry("spanline-rag-retrieval", 1_000, args)?;
    let t: Telemetry = guard.telemetry();
    let corpus = Corpus::load(&args.settings.corpus)?;
    let embedder =
        spanline::models::BertEmbedder::minilm(&spanline::models::ModelResolver::from_env())?;
    let kafka = app::kafka(&args.settings).await?;
    let worker = app::retrieval_worker(
        &kafka,
        &t,
        &embedder,
        &corpus,
        args.settings.top_k,
        app::group_assignment(),
    )
    .await?;
    eprintln!(
        "rag: retrieval worker ready ({} chunks) on {REQUEST_TOPIC}",
        corpus.chunks.len()
    );
    let report = worker.run(shutdown_signal()).await?;
    eprintln!("rag: retrieval worker stopped: {report:?}");
    let _ = guard.shutdown();
    Ok(())
}

async fn rerank_worker(args: &Args) -> Result<(), RagError> {
    let guard = telemetry("spanline-rag-rerank", 1_000, args)?;
    let t = guard.telemetry();
    let embedder =
        spanline::models::BertEmbedder::minilm(&spanline::models::ModelResolver::from_env())?;
    let addr = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50061)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RagError::Other(format!("listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| RagError::Other(e.to_string()))?;
    eprintln!("rag: rerank worker listening on http://{local}");
    app::rerank_worker(&t, &embedder, args.settings.reranker, args.settings.keep)
        .serve(listener, shutdown_signal())
        .await?;
    let _ = guard.shutdown();
    Ok(())
}
