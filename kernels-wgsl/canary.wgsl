// The end-of-dispatch check every kernel runs last (the host concatenates this file before a
// kernel, whose uniform P has a `canary` field ≥ 1 that varies between dispatches).
// llvmpipe ends every loop of an invocation once all of them together have run 65535
// iterations; the hosts size dispatches below that, and this loop with a runtime trip count
// is cut short too if it happened anyway, so such a dispatch reports itself instead of
// leaving wrong numbers.
fn canary_cut_short() -> bool {
  var canary = 0u;
  for (var c = 0u; c < P.canary; c++) { canary += 1u; }
  return canary != P.canary;
}
