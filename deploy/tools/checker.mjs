// The counting check() and the exit line shared by the deploy checkers.
export function checker() {
  const problems = [];
  let checks = 0;
  return {
    problems,
    check(ok, msg) {
      checks++;
      if (!ok) problems.push(msg);
      return ok;
    },
    // Prints every problem and "ok|FAILED: N <summary>", exits 0 or 1.
    finish(summary) {
      for (const p of problems) console.error(`FAIL ${p}`);
      console.log(`${problems.length ? "FAILED" : "ok"}: ${checks} ${summary}, ${problems.length} problems`);
      process.exit(problems.length ? 1 : 0);
    },
  };
}
