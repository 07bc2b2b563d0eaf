//! Lua scripting: `EVAL`/`EVALSHA` bodies run by the embedded Lua 5.1 (the version Redis
//! embeds) with `KEYS`, `ARGV`, `redis.call` and `redis.pcall`, and Redis's conversions
//! between replies and Lua values.
//!
//! A script runs to its end without awaiting, so it is atomic, as in Redis. Nothing here
//! may keep data of its own: every `redis.call` goes to the [`Db`].

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Lua, MultiValue, Value as LuaValue};

use super::{Db, Reply, int_arg};

/// Redis → Lua conversion for `redis.call` results.
pub(super) fn to_lua(lua: &Lua, reply: Reply) -> mlua::Result<LuaValue> {
    Ok(match reply {
        Reply::Int(i) => LuaValue::Number(i as f64),
        Reply::Bulk(b) => LuaValue::String(lua.create_string(&b)?),
        Reply::Nil => LuaValue::Boolean(false),
        Reply::Status(s) => {
            let t = lua.create_table()?;
            t.set("ok", s)?;
            LuaValue::Table(t)
        }
        Reply::Error(e) => {
            let t = lua.create_table()?;
            t.set("err", e)?;
            LuaValue::Table(t)
        }
        Reply::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.into_iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Lua → Redis conversion for script results.
pub(super) fn from_lua(value: LuaValue) -> Reply {
    match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Reply::Nil,
        LuaValue::Boolean(true) => Reply::Int(1),
        LuaValue::Integer(i) => Reply::Int(i),
        LuaValue::Number(n) => Reply::Int(n as i64),
        LuaValue::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        LuaValue::Table(t) => {
            if let Ok(LuaValue::String(e)) = t.get::<LuaValue>("err") {
                return Reply::Error(e.to_string_lossy().to_string());
            }
            if let Ok(LuaValue::String(s)) = t.get::<LuaValue>("ok") {
                return Reply::Status(s.to_string_lossy().to_string());
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.get::<LuaValue>(i) {
                    Ok(LuaValue::Nil) | Err(_) => break,
                    Ok(v) => items.push(from_lua(v)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}

pub(super) fn lua_args(args: MultiValue) -> mlua::Result<Vec<Vec<u8>>> {
    args.into_iter()
        .map(|v| match v {
            LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
            LuaValue::Integer(i) => Ok(i.to_string().into_bytes()),
            LuaValue::Number(n) => Ok(if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", n as i64).into_bytes()
            } else {
                format!("{n:.17}").into_bytes()
            }),
            _ => Err(mlua::Error::runtime(
                "Lua redis() command arguments must be strings or integers",
            )),
        })
        .collect()
}

pub(super) fn install_redis_api(lua: &Lua, db: &Rc<RefCell<Db>>) -> mlua::Result<()> {
    let redis = lua.create_table()?;
    let call_db = Rc::clone(db);
    redis.set(
        "call",
        lua.create_function(move |lua, args: MultiValue| {
            let args = lua_args(args)?;
            let reply = call_db.borrow_mut().exec(&args);
            match reply {
                Reply::Error(e) => {
                    call_db.borrow_mut().call_error = Some(e.clone());
                    Err(mlua::Error::runtime(e))
                }
                reply => to_lua(lua, reply),
            }
        })?,
    )?;
    let pcall_db = Rc::clone(db);
    redis.set(
        "pcall",
        lua.create_function(move |lua, args: MultiValue| {
            let args = lua_args(args)?;
            let reply = pcall_db.borrow_mut().exec(&args);
            to_lua(lua, reply)
        })?,
    )?;
    lua.globals().set("redis", redis)?;
    Ok(())
}

/// Runs a script. An error raised by `redis.call` is the script's reply as it was, with the
/// script named after it (Redis 7 keeps the error's code: `OOM`, `WRONGTYPE`, ...).
pub(super) fn eval(
    lua: &Lua,
    db: &Rc<RefCell<Db>>,
    sha: &str,
    body: &str,
    rest: &[Vec<u8>],
) -> Reply {
    let Some(numkeys) = rest
        .first()
        .and_then(|n| int_arg(n))
        .and_then(|n| usize::try_from(n).ok())
    else {
        return Reply::err("ERR value is not an integer or out of range");
    };
    if rest.len() < 1 + numkeys {
        return Reply::err("ERR Number of keys can't be greater than number of args");
    }
    let run = || -> mlua::Result<LuaValue> {
        let keys = lua.create_table()?;
        for (i, k) in rest[1..=numkeys].iter().enumerate() {
            keys.set(i + 1, lua.create_string(k)?)?;
        }
        let argv = lua.create_table()?;
        for (i, v) in rest[1 + numkeys..].iter().enumerate() {
            argv.set(i + 1, lua.create_string(v)?)?;
        }
        lua.globals().set("KEYS", keys)?;
        lua.globals().set("ARGV", argv)?;
        lua.load(body).eval::<LuaValue>()
    };
    {
        let mut db = db.borrow_mut();
        db.script_dirty = Some(false);
        db.call_error = None;
    }
    let result = run();
    let call_error = {
        let mut db = db.borrow_mut();
        db.script_dirty = None;
        db.call_error.take()
    };
    match (result, call_error) {
        (Ok(v), _) => from_lua(v),
        (Err(_), Some(e)) => Reply::Error(format!("{e} script: {sha}, on @user_script:1.")),
        (Err(e), None) => Reply::Error(format!("ERR Error running script: {e}")),
    }
}
