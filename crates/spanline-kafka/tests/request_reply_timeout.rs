//! A slow broker and a short deadline: a typed timeout, and the reply that
//! arrives afterwards is discarded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Broker, topic, wait_until};
use spanline_core::{ErrorKind, RequestContext, Stage, StageDescriptor, StageKind, stage_fn};
use spanline_kafka::{
    KafkaError, RequestReply, RequestReplyConfig, StageHandler, Worker, WorkerConfig,
};
use spanline_testkit::TestTelemetry;
use tokio::sync::{Notify, mpsc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broker_short_deadline_gives_a_typed_timeout_and_drops_the_late_reply() {
    let broker = Broker::mock();
    let embedded = broker.embedded.clone().unwrap();
    let t = TestTelemetry::new();
    let requests = topic("slow.requests");
    let replies = topic("slow.replies");
    broker.create_topic(&requests, 1).await;
    broker.create_topic(&replies, 1).await;
    let kafka = broker.config();

    // The worker's stage tells us it has the request, then waits for a go.
    let (got_tx, mut got) = mpsc::unbounded_channel::<()>();
    let go = Arc::new(Notify::new());
    let go_stage = go.clone();
    let worker = Worker::build(
        &kafka,
        t.telemetry(),
        WorkerConfig::assign("slow-workers", &requests, &[0]),
        move |p| {
            StageHandler::new(
                stage_fn(
                    StageDescriptor::new("upper", StageKind::Custom),
                    move |s: String, _ctx| {
                        let got_tx = got_tx.clone();
                        let go = go_stage.clone();
                        async move {
                            let _ = got_tx.send(());
                            go.notified().await;
                            Ok(s.to_uppercase())
                        }
                    },
                ),
                p.clone(),
            )
        },
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let caller = RequestReply::<String, String>::connect(
        &kafka,
        t.telemetry(),
        RequestReplyConfig::new(
            StageDescriptor::new("remote-upper", StageKind::Custom),
            &requests,
            &replies,
        ),
    )
    .await
    .unwrap();
    let ctx = RequestContext::new().with_timeout(Duration::from_secs(3));
    let call = caller.run("hello".to_owned(), &ctx);
    tokio::pin!(call);
    // Wait until the worker holds the request, then slow the broker down
    // so that the reply cannot make the deadline.
    tokio::select! {
        _ = &mut call => panic!("the call cannot finish before the worker replies"),
        _ = got.recv() => {}
    }
    embedded
        .with_cluster(|c| c.broker_round_trip_time(1, Duration::from_secs(4)))
        .unwrap()
        .unwrap();
    go.notify_one();
    let err = call.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    let source = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<KafkaError>())
        .expect("a KafkaError source");
    assert!(matches!(
        source,
        KafkaError::ReplyTimeout { deadline: true, .. }
    ));
    assert_eq!(caller.in_flight(), 0);

    // The broker recovers; the reply arrives late and is dropped.
    embedded
        .with_cluster(|c| c.broker_round_trip_time(1, Duration::ZERO))
        .unwrap()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || caller.late_replies() == 1).await,
        "the late reply was seen and discarded"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
