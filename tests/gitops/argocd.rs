//! Runs charts/panoptes/argocd/health.lua the way Argo CD does: Lua 5.1 (Argo CD embeds
//! gopher-lua), only the base, table, string and math libraries, the live object as the
//! global `obj`, and a table with `status` and `message` returned.

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib};
use serde_json::Value;

use crate::support::repo_root;

/// The health script as shipped.
pub fn script() -> String {
    std::fs::read_to_string(repo_root().join("charts/panoptes/argocd/health.lua")).unwrap()
}

/// Argo CD's health (`Healthy`, `Progressing`, `Degraded`, …) and message for `obj`.
pub fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )
    .unwrap();
    // JSON null becomes nil, as for Argo CD's unstructured objects (nulls are absent there).
    let opts = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, opts).unwrap();
    lua.globals().set("obj", value).unwrap();
    let hs: mlua::Table = lua
        .load(script())
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"));
    let status: String = hs.get("status").unwrap();
    let message: Option<String> = hs.get("message").unwrap();
    (status, message.unwrap_or_default())
}
