//! Integration tests for the demo's private PostgreSQL and Redis: they start, answer, keep their
//! data across restarts, and leave no process behind when stopped or dropped.

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;

use common::tempdir::TempDir;
use livefund::demo::services::LocalServices;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::Connection;

async fn check_answers(services: &LocalServices) {
    assert!(services.database_url().ends_with("/livefund"));
    let mut db = sqlx::PgConnection::connect(services.database_url())
        .await
        .expect("connect to PostgreSQL");
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut db)
        .await
        .expect("select 1");
    assert_eq!(one, 1);
    db.close().await.expect("close the connection");

    let client = redis::Client::open(services.redis_url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
}

async fn write_marks(services: &LocalServices) {
    let mut db = sqlx::PgConnection::connect(services.database_url())
        .await
        .expect("connect to PostgreSQL");
    sqlx::query("create table mark (note text not null)")
        .execute(&mut db)
        .await
        .expect("create table");
    sqlx::query("insert into mark (note) values ('kept')")
        .execute(&mut db)
        .await
        .expect("insert");
    db.close().await.expect("close the connection");

    let client = redis::Client::open(services.redis_url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let () = redis::cmd("SET")
        .arg("mark")
        .arg("kept")
        .query_async(&mut connection)
        .await
        .expect("SET");
}

async fn read_marks(services: &LocalServices) -> (String, String) {
    let mut db = sqlx::PgConnection::connect(services.database_url())
        .await
        .expect("connect to PostgreSQL");
    let note: String = sqlx::query_scalar("select note from mark")
        .fetch_one(&mut db)
        .await
        .expect("read the table written before the restart");
    db.close().await.expect("close the connection");

    let client = redis::Client::open(services.redis_url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let value: String = redis::cmd("GET")
        .arg("mark")
        .query_async(&mut connection)
        .await
        .expect("read the key written before the restart");
    (note, value)
}

fn process_exists(pid: u32) -> bool {
    let pid = i32::try_from(pid).expect("pid fits");
    assert!(pid > 0, "a real pid");
    // No signal: only checks whether the process exists.
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

/// Processes whose working folder lies inside `dir`: every PostgreSQL process (the server and
/// its workers) works in its cluster folder and Redis in its data folder.
fn processes_working_in(dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cwd) = fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(pid);
        }
    }
    found
}

fn assert_all_gone(pids: (u32, u32), ports: (u16, u16), dir: &Path) {
    assert!(!process_exists(pids.0), "PostgreSQL {} still runs", pids.0);
    assert!(!process_exists(pids.1), "Redis {} still runs", pids.1);
    for port in [ports.0, ports.1] {
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "port {port} still accepts connections"
        );
    }
    assert_eq!(
        processes_working_in(dir),
        Vec::<u32>::new(),
        "leftover processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_answers_stops_and_restarts_on_the_same_data() {
    let dir = TempDir::new("services");

    let first = LocalServices::start(dir.path()).await.expect("first start");
    check_answers(&first).await;
    write_marks(&first).await;
    let (pids, ports) = (first.pids(), first.ports());
    assert!(process_exists(pids.0) && process_exists(pids.1));
    assert!(!processes_working_in(dir.path()).is_empty());
    first.stop().await.expect("first stop");
    assert_all_gone(pids, ports, dir.path());
    assert!(dir.path().join("postgres.log").is_file());
    assert!(dir.path().join("redis.log").is_file());

    let second = LocalServices::start(dir.path())
        .await
        .expect("restart on the same data");
    check_answers(&second).await;
    assert_eq!(
        read_marks(&second).await,
        ("kept".to_owned(), "kept".to_owned())
    );
    let (pids, ports) = (second.pids(), second.ports());
    second.stop().await.expect("second stop");
    assert_all_gone(pids, ports, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_without_stop_leaves_nothing_behind() {
    let dir = TempDir::new("services-drop");
    let services = LocalServices::start(dir.path()).await.expect("start");
    check_answers(&services).await;
    let (pids, ports) = (services.pids(), services.ports());
    drop(services);
    assert_all_gone(pids, ports, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_after_the_servers_were_killed() {
    let dir = TempDir::new("services-killed");
    let services = LocalServices::start(dir.path()).await.expect("start");
    let (postgres, redis) = services.pids();
    // As if the machine lost power: no shutdown at all.
    for pid in [postgres, redis] {
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits"));
        kill(pid, Signal::SIGKILL).expect("kill our child");
    }
    services
        .stop()
        .await
        .expect("stop tolerates exited servers");
    assert!(dir.path().join("postgres/postmaster.pid").exists());
    // PostgreSQL workers notice the death of their server and exit on their own.
    for _ in 0..100 {
        if processes_working_in(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let again = LocalServices::start(dir.path())
        .await
        .expect("start over a stale postmaster.pid");
    check_answers(&again).await;
    let (pids, ports) = (again.pids(), again.ports());
    again.stop().await.expect("stop");
    assert_all_gone(pids, ports, dir.path());
}
