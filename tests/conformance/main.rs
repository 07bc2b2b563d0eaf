//! The simulated Redis (`afw-sim`) held to a real `redis-server`: the same command
//! sequences go to both, and the replies must be identical.

#[allow(dead_code)]
#[path = "../redis/server.rs"]
mod server;

use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use server::{RedisServer, SimRestart, spawn_sim_redis, spawn_sim_redis_controlled};

async fn connect(port: u16) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
    // No response timeout of the client's own: the tests that need one set theirs.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect")
}

/// Replies compared as data: HGETALL-like flat arrays are compared as maps where Redis
/// leaves the order unspecified.
fn normalise(cmd: &[&str], v: Value) -> Value {
    match (cmd.first().map(|c| c.to_ascii_uppercase()).as_deref(), v) {
        (Some("HGETALL"), Value::Array(items)) => {
            let mut pairs: Vec<(Value, Value)> = items
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            pairs.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            Value::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
        }
        (Some("SMEMBERS"), Value::Array(mut items)) => {
            items.sort_by_key(|v| format!("{v:?}"));
            Value::Array(items)
        }
        (Some("PTTL" | "TTL"), Value::Int(ms)) if ms > 0 => Value::Int(1),
        (_, Value::ServerError(e)) => Value::SimpleString(format!("error: {}", e.code())),
        (_, other) => other,
    }
}

async fn run(conn: &mut MultiplexedConnection, cmd: &[&str]) -> Value {
    let mut c = redis::cmd(cmd[0]);
    for arg in &cmd[1..] {
        c.arg(*arg);
    }
    let v = match c.query_async::<Value>(conn).await {
        Ok(v) => v,
        Err(e) => Value::SimpleString(format!("error: {}", e.code().unwrap_or("?"))),
    };
    normalise(cmd, v)
}

/// Sends each command to both servers and requires the same reply.
async fn same_replies(sequence: &[&[&str]]) {
    let real_server = RedisServer::start();
    let mut real = connect(real_server.port).await;
    let mut sim = connect(spawn_sim_redis()).await;
    for cmd in sequence {
        let want = run(&mut real, cmd).await;
        let got = run(&mut sim, cmd).await;
        assert_eq!(got, want, "{cmd:?}");
    }
}

#[tokio::test]
async fn strings_and_keys() {
    same_replies(&[
        &["SET", "a", "1"],
        &["GET", "a"],
        &["GET", "missing"],
        &["SET", "a", "2", "NX"],
        &["SET", "b", "x", "PX", "60000"],
        &["MGET", "a", "missing", "b"],
        &["EXISTS", "a", "b", "missing"],
        &["TYPE", "a"],
        &["TYPE", "missing"],
        &["PTTL", "b"],
        &["PTTL", "a"],
        &["PTTL", "missing"],
        &["DEL", "a", "missing"],
        &["GET", "a"],
        &["SET", "c", "v", "PX", "0"],
        &["PING"],
    ])
    .await;
}

#[tokio::test]
async fn lists() {
    same_replies(&[
        &["RPUSH", "l", "a", "b", "c", "d", "e"],
        &["LPUSH", "l", "z"],
        &["LRANGE", "l", "0", "-1"],
        &["LRANGE", "l", "-2", "-1"],
        &["LRANGE", "l", "4", "100"],
        &["LRANGE", "l", "5", "2"],
        &["LINDEX", "l", "0"],
        &["LINDEX", "l", "-1"],
        &["LINDEX", "l", "99"],
        &["LLEN", "l"],
        &["LTRIM", "l", "-3", "-1"],
        &["LRANGE", "l", "0", "-1"],
        &["LPOP", "l"],
        &["LTRIM", "l", "5", "9"],
        &["EXISTS", "l"],
        &["LPOP", "l"],
        &["LLEN", "missing"],
        &["SET", "s", "x"],
        &["RPUSH", "s", "y"],
        &["LRANGE", "s", "0", "-1"],
    ])
    .await;
}

#[tokio::test]
async fn hashes_sets_and_sorted_sets() {
    same_replies(&[
        &["HSET", "h", "json", "{}", "status", "pending"],
        &["HSET", "h", "status", "delivered", "deliveredAt", "5"],
        &["HGET", "h", "status"],
        &["HGET", "h", "nope"],
        &["HGETALL", "h"],
        &["HDEL", "h", "deliveredAt", "nope"],
        &["HGETALL", "missing"],
        &["SADD", "set", "b", "a", "b"],
        &["SMEMBERS", "set"],
        &["SCARD", "set"],
        &["SCARD", "missing"],
        &["INCRBY", "counter", "5"],
        &["INCRBY", "counter", "-7"],
        &["GET", "counter"],
        &["SET", "text", "abc"],
        &["INCRBY", "text", "1"],
        &["INCRBY", "counter", "x"],
        &["INCRBY", "set", "1"],
        &["SADD", "set2", "x", "y"],
        &["SREM", "set2", "x", "nope"],
        &["SREM", "set2", "y"],
        &["EXISTS", "set2"],
        &["SREM", "missing", "x"],
        &["ZADD", "z", "300", "c", "100", "a", "200", "b"],
        &["ZADD", "z", "150", "a"],
        &["ZRANGE", "z", "0", "-1"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["ZRANGEBYSCORE", "z", "-inf", "200"],
        &["ZRANGEBYSCORE", "z", "201", "+inf"],
        &["ZSCORE", "z", "b"],
        &["ZSCORE", "z", "nope"],
        &["ZSCORE", "missing", "b"],
        &["ZCARD", "z"],
        &["ZCARD", "missing"],
        &["ZADD", "z", "200", "bb", "400", "d", "500", "e"],
        &[
            "ZRANGE", "z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "0", "2",
        ],
        &[
            "ZRANGE",
            "z",
            "+inf",
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            "1",
            "3",
            "WITHSCORES",
        ],
        &[
            "ZRANGE", "z", "(400", "150", "BYSCORE", "REV", "LIMIT", "0", "10",
        ],
        &["ZRANGE", "z", "200", "+inf", "BYSCORE", "LIMIT", "1", "-1"],
        &[
            "ZRANGE", "missing", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "0", "2",
        ],
        &["ZREMRANGEBYSCORE", "z", "-inf", "(200"],
        &["ZRANGE", "z", "0", "-1"],
        &["ZREMRANGEBYSCORE", "z", "450", "+inf"],
        &["ZREMRANGEBYSCORE", "missing", "-inf", "+inf"],
        &[
            "ZADD", "r", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ],
        &["ZREMRANGEBYRANK", "r", "0", "-4"],
        &["ZRANGE", "r", "0", "-1"],
        &["ZREMRANGEBYRANK", "r", "5", "9"],
        &["ZREMRANGEBYRANK", "r", "-1", "-1"],
        &["ZRANGE", "r", "0", "-1", "WITHSCORES"],
        &["ZREMRANGEBYRANK", "r", "0", "-1"],
        &["EXISTS", "r"],
        &["ZREMRANGEBYRANK", "missing", "0", "-1"],
        &["ZREMRANGEBYRANK", "text", "0", "-1"],
        &["ZREMRANGEBYSCORE", "text", "-inf", "+inf"],
        &["ZSCORE", "text", "x"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["ZREM", "z", "bb", "d"],
        &["ZREM", "z", "a", "nope"],
        &["ZREM", "z", "b", "c"],
        &["EXISTS", "z"],
        &["HGET", "set", "x"],
    ])
    .await;
}

#[tokio::test]
async fn lua_scripts_and_conversions() {
    same_replies(&[
        &["EVAL", "return {1, 'two', false, {ok='fine'}, 3.7}", "0"],
        &[
            "EVAL",
            "return redis.call('SET', KEYS[1], ARGV[1])",
            "1",
            "k",
            "v",
        ],
        &["EVAL", "return redis.call('GET', KEYS[1])", "1", "k"],
        &["EVAL", "return redis.call('GET', 'nope')", "0"],
        &[
            "EVAL",
            "local t = redis.call('LRANGE', 'nope', 0, -1) return #t",
            "0",
        ],
        &[
            "EVAL",
            "redis.call('RPUSH', 'l', 'a', 'b') return redis.call('LRANGE', 'l', 0, -1)",
            "0",
        ],
        &[
            "EVAL",
            "return redis.call('ZADD', 'z', 1795183200000, 'm')",
            "0",
        ],
        &[
            "EVAL",
            "return redis.call('ZRANGEBYSCORE', 'z', '-inf', tonumber(ARGV[1]))",
            "0",
            "1795183200001",
        ],
        &[
            "EVAL",
            "return redis.pcall('RPUSH', 'k', 'x')['err'] ~= nil",
            "0",
        ],
        &["EVAL", "return {err='custom failure'}", "0"],
        &[
            "EVAL",
            "return redis.call('EXISTS', 'k') == 1 and 'yes' or 'no'",
            "0",
        ],
        &["EVALSHA", "0000000000000000000000000000000000000000", "0"],
        &["SCRIPT", "LOAD", "return ARGV[1] .. ARGV[2]"],
    ])
    .await;
}

/// Redis does not persist its script cache, with or without AOF: after a restart every
/// `EVALSHA` answers `NOSCRIPT` until the script is loaded again, while the keys are kept
/// (AOF) or gone (no persistence). The simulation's Redis crashes restart the same way.
#[tokio::test]
async fn the_script_cache_is_lost_on_restart_with_and_without_aof() {
    for aof in [true, false] {
        let mut real_server = if aof {
            RedisServer::start_with_aof()
        } else {
            RedisServer::start()
        };
        let (sim_port, sim_control) = spawn_sim_redis_controlled();
        let (mut real, mut sim) = (connect(real_server.port).await, connect(sim_port).await);
        let body = "return redis.call('GET', KEYS[1])";
        for cmd in [&["SET", "k", "v"][..], &["SCRIPT", "LOAD", body]] {
            assert_eq!(
                run(&mut sim, cmd).await,
                run(&mut real, cmd).await,
                "{cmd:?}"
            );
        }
        let Value::BulkString(sha) = run(&mut real, &["SCRIPT", "LOAD", body]).await else {
            panic!("SCRIPT LOAD answers the sha")
        };
        let sha = String::from_utf8(sha).unwrap();
        let evalsha: &[&str] = &["EVALSHA", &sha, "1", "k"];
        assert_eq!(
            run(&mut real, evalsha).await,
            Value::BulkString(b"v".to_vec())
        );
        assert_eq!(
            run(&mut sim, evalsha).await,
            Value::BulkString(b"v".to_vec())
        );

        real_server.kill();
        real_server.restart();
        sim_control.restart(if aof {
            SimRestart::KeepData
        } else {
            SimRestart::LoseData
        });
        let (mut real, mut sim) = (connect(real_server.port).await, connect(sim_port).await);
        let forgot = run(&mut real, evalsha).await;
        assert_eq!(
            forgot,
            Value::SimpleString("error: NOSCRIPT".into()),
            "aof {aof}"
        );
        assert_eq!(run(&mut sim, evalsha).await, forgot, "aof {aof}");
        // The data as persistence left it; EVAL loads the script again, EVALSHA then works.
        for cmd in [&["GET", "k"][..], &["EVAL", body, "1", "k"], evalsha] {
            let want = run(&mut real, cmd).await;
            assert_eq!(run(&mut sim, cmd).await, want, "aof {aof}: {cmd:?}");
        }
    }
}

/// Sends `cmds` on one raw connection, in order, and returns each reply's first line
/// (a subscribed connection's PING, which redis-rs does not send).
async fn raw_replies(port: u16, cmds: &[&[&str]]) -> Vec<String> {
    use tokio::io::{AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut out = Vec::new();
    for cmd in cmds {
        let mut resp = format!("*{}\r\n", cmd.len());
        for arg in *cmd {
            resp.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        write.write_all(resp.as_bytes()).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut read));
        out.push(reply.await.expect("a reply"));
    }
    out
}

/// Reads one whole RESP2 reply (nested arrays and bulk strings included); returns its
/// first line.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut first = None;
    // Values still to read: one, plus every array's items as they are announced.
    let mut pending = 1i64;
    while pending > 0 {
        let mut line = String::new();
        read.read_line(&mut line).await.expect("read");
        let line = line.trim_end().to_owned();
        pending -= 1;
        let n: i64 = line.get(1..).and_then(|n| n.parse().ok()).unwrap_or(-1);
        match line.as_bytes().first() {
            Some(b'*') => pending += n.max(0),
            Some(b'$') if n >= 0 => {
                let mut body = String::new();
                read.read_line(&mut body).await.expect("read");
            }
            _ => {}
        }
        first.get_or_insert(line);
    }
    first.unwrap_or_default()
}

/// After a restart with persistence Redis replays its AOF before it serves data: meanwhile
/// every data command, scripts included (and PING, even on a subscribed connection),
/// answers `LOADING`, while SELECT, PUBLISH and SUBSCRIBE are served; then the data is
/// back. The simulation's Redis restarts after a crash the same way, for a time that grows
/// with its data.
#[tokio::test]
async fn a_restarted_server_answers_loading_until_its_data_is_back() {
    let mut real_server = RedisServer::start_with_aof();
    real_server.populate(20_000);
    let (sim_port, sim_control) = spawn_sim_redis_controlled();
    let body = "return redis.call('GET', KEYS[1])";
    let before: &[&[&str]] = &[&["SET", "k", "v"], &["SCRIPT", "LOAD", body]];
    let (mut real, mut sim) = (connect(real_server.port).await, connect(sim_port).await);
    for cmd in before {
        assert_eq!(
            run(&mut sim, cmd).await,
            run(&mut real, cmd).await,
            "{cmd:?}"
        );
    }
    real_server.kill();
    // 20 000 keys at 100 µs each: about two seconds of loading.
    real_server.restart_loading(100);
    sim_control.restart(SimRestart::KeepDataLoading(Duration::from_secs(2)));
    let sha = "d3c21d0c2b9ca22f82737626a27bcaf5d288f99f";
    let during: &[&[&str]] = &[
        &["PING"],
        &["GET", "k"],
        &["SET", "a", "b"],
        &["EXISTS", "k"],
        &["DBSIZE"],
        &["EVAL", body, "1", "k"],
        &["EVALSHA", sha, "1", "k"],
        &["SCRIPT", "LOAD", body],
        &["SELECT", "0"],
        &["PUBLISH", "ch", "m"],
    ];
    let (mut real, mut sim) = (connect(real_server.port).await, connect(sim_port).await);
    for cmd in during {
        let want = run(&mut real, cmd).await;
        assert_eq!(run(&mut sim, cmd).await, want, "while loading: {cmd:?}");
    }
    let subscribed: &[&[&str]] = &[&["SUBSCRIBE", "ch"], &["PING"]];
    let want = raw_replies(real_server.port, subscribed).await;
    assert_eq!(want[1], "-LOADING Redis is loading the dataset in memory");
    assert_eq!(raw_replies(sim_port, subscribed).await, want);
    assert!(
        real_server.loading(),
        "the real server finished loading before the comparison did: its replies were not \
         all taken while loading"
    );
    // Loaded: the data as it was, scripts forgotten.
    for conn in [&mut real, &mut sim] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while run(conn, &["PING"]).await != Value::SimpleString("PONG".into()) {
            assert!(
                std::time::Instant::now() < deadline,
                "still loading after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for cmd in [&["GET", "k"][..], &["EVALSHA", sha, "1", "k"]] {
        let want = run(&mut real, cmd).await;
        assert_eq!(run(&mut sim, cmd).await, want, "loaded: {cmd:?}");
    }
}

#[tokio::test]
async fn keys_expire_on_time() {
    let real_server = RedisServer::start();
    let mut real = connect(real_server.port).await;
    let mut sim = connect(spawn_sim_redis()).await;
    for conn in [&mut real, &mut sim] {
        run(conn, &["SET", "a", "1"]).await;
        run(conn, &["RPUSH", "l", "x"]).await;
        assert_eq!(run(conn, &["PEXPIRE", "a", "100"]).await, Value::Int(1));
        assert_eq!(run(conn, &["PEXPIRE", "l", "100"]).await, Value::Int(1));
        assert_eq!(
            run(conn, &["PEXPIRE", "missing", "100"]).await,
            Value::Int(0)
        );
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    for conn in [&mut real, &mut sim] {
        assert_eq!(run(conn, &["GET", "a"]).await, Value::Nil);
        assert_eq!(run(conn, &["LLEN", "l"]).await, Value::Int(0));
        assert_eq!(run(conn, &["EXISTS", "a", "l"]).await, Value::Int(0));
    }
}

#[tokio::test]
async fn pubsub_delivers_to_subscribers_in_order_and_answers_ping() {
    let real_server = RedisServer::start();
    for port in [real_server.port, spawn_sim_redis()] {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe("afw:events").await.expect("subscribe");
        let (mut sink, mut stream) = pubsub.split();
        let pong: Value = sink.ping().await.expect("ping while subscribed");
        assert!(
            matches!(pong, Value::Array(_) | Value::SimpleString(_)),
            "{pong:?}"
        );
        let mut conn = connect(port).await;
        for i in 0..5 {
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg("afw:events")
                .arg(format!("m{i}"))
                .query_async(&mut conn)
                .await
                .expect("publish");
            assert_eq!(receivers, 1);
        }
        use futures_util::StreamExt;
        for i in 0..5 {
            let msg = tokio::time::timeout(Duration::from_secs(2), stream.next())
                .await
                .expect("a message")
                .expect("open");
            assert_eq!(msg.get_payload::<String>().unwrap(), format!("m{i}"));
        }
    }
}

/// A stalled server (`DEBUG SLEEP`, like a `SIGSTOP`) keeps its connections open: a command
/// sent meanwhile gets no answer until the stall ends (a client with a short timeout gives
/// up) and still runs afterwards; then everything answers again.
#[tokio::test]
async fn a_stalled_server_runs_what_was_sent_meanwhile_afterwards() {
    let real_server = RedisServer::start();
    for port in [real_server.port, spawn_sim_redis()] {
        let mut sleeper = connect(port).await;
        let mut writer = connect(port).await;
        let mut probe = connect(port).await;
        let stall = tokio::spawn(async move { run(&mut sleeper, &["DEBUG", "SLEEP", "2"]).await });
        // The stall has begun once a PING on another connection goes unanswered.
        let mut begun = false;
        for _ in 0..100 {
            let ping = tokio::time::timeout(Duration::from_millis(50), run(&mut probe, &["PING"]));
            if ping.await.is_err() {
                begun = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(begun, "port {port}: the server never stalled");
        let write = tokio::time::timeout(
            Duration::from_millis(300),
            run(&mut writer, &["SET", "k", "during"]),
        )
        .await;
        assert!(
            write.is_err(),
            "port {port}: the write answered during the stall"
        );
        assert_eq!(
            stall.await.expect("sleeper"),
            Value::Okay,
            "port {port}: DEBUG SLEEP answers OK when it is over"
        );
        let mut reader = connect(port).await;
        assert_eq!(
            run(&mut reader, &["GET", "k"]).await,
            Value::BulkString(b"during".to_vec()),
            "port {port}: the write sent during the stall ran after it"
        );
    }
}

/// `CLIENT KILL TYPE pubsub` closes every subscribed connection (and says how many); the
/// others stay.
#[tokio::test]
async fn client_kill_type_pubsub_closes_the_subscribers() {
    use futures_util::StreamExt;
    let real_server = RedisServer::start();
    for port in [real_server.port, spawn_sim_redis()] {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe("afw:events").await.expect("subscribe");
        let mut stream = pubsub.into_on_message();
        let mut conn = connect(port).await;
        let killed = run(&mut conn, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        assert_eq!(killed, Value::Int(1), "port {port}");
        let end = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("the subscriber learns it was closed");
        assert!(end.is_none(), "port {port}: {end:?}");
        assert_eq!(
            run(&mut conn, &["PING"]).await,
            Value::SimpleString("PONG".into())
        );
        assert_eq!(
            run(&mut conn, &["CLIENT", "KILL", "TYPE", "pubsub"]).await,
            Value::Int(0),
            "port {port}"
        );
    }
}

/// `maxmemory` (noeviction) exceeded: `denyoom` commands answer `OOM`, reads, deletes,
/// pops, expiries and `PUBLISH` still run; a script fails on its first `denyoom` call only
/// while it has written nothing (one that popped first runs to its end); a `redis.call`
/// error keeps its code (`OOM`, `WRONGTYPE`) in the script's reply.
#[tokio::test]
async fn a_full_server_refuses_writes_with_oom_but_never_half_a_script() {
    let pop_then_set =
        "local x = redis.call('LPOP', KEYS[1]); redis.call('SET', KEYS[2], 'x'); return x";
    let set_only = "return redis.call('SET', KEYS[1], 'y')";
    same_replies(&[
        &["RPUSH", "l", "a", "b", "c"],
        &["SET", "s", "v"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["CONFIG", "GET", "maxmemory"],
        &["SET", "k", "v"],
        &["RPUSH", "l", "d"],
        &["HSET", "h", "f", "v"],
        &["INCRBY", "n", "1"],
        &["GET", "s"],
        &["LPOP", "l"],
        &["PEXPIRE", "s", "100000"],
        &["PUBLISH", "c", "m"],
        &["EVAL", set_only, "1", "k"],
        &["EVAL", pop_then_set, "2", "l", "k"],
        &["GET", "k"],
        &["LRANGE", "l", "0", "-1"],
        &["DEL", "s"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["SET", "k", "v2"],
        &["EVAL", "return redis.call('LPUSH', KEYS[1], 'x')", "1", "k"],
        &[
            "EVAL",
            "return redis.pcall('LPUSH', KEYS[1], 'x')",
            "1",
            "k",
        ],
    ])
    .await;
}
