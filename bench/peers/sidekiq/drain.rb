# Sidekiq no-op drain, for bench/peers/run.sh.
#
#   ruby drain.rb PORT N CONCURRENCY
#
# What it measures, the same way `vigil bench` does:
# - push N no-op jobs with Sidekiq::Client.push_bulk (1,000 per call) to a staging queue;
# - start one Sidekiq process (`sidekiq -r ./worker.rb -c C`, basic fetch, the open-source
#   default) on the empty `default` queue and wait until it has registered;
# - RENAME the staging list to `queue:default`: the backlog appears at once and the clock
#   starts; it stops when the N-th job has run (see worker.rb): process_jobs_per_s =
#   N / drain time (the enqueue and Ruby's boot are not timed);
# - Redis CPU per job: INFO cpu (used_cpu_sys + used_cpu_user) before the enqueue and after
#   the drain, divided by N.
# Prints one JSON line.
require "json"
require "sidekiq"
require "sidekiq/api"
require_relative "worker"

port, n, concurrency = ARGV.map(&:to_i)
url = "redis://127.0.0.1:#{port}/0"
Sidekiq.configure_client { |c| c.redis = { url: url } }

def cpu_seconds
  info = Sidekiq.redis { |r| r.info("cpu") }
  info["used_cpu_sys"].to_f + info["used_cpu_user"].to_f
end

def wait_for(what, limit)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + limit
  until (value = yield)
    abort "sidekiq drain: #{what} did not happen in #{limit} s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    sleep 0.005
  end
  value
end

cpu_before = cpu_seconds
(0...n).each_slice(1000) do |slice|
  Sidekiq::Client.push_bulk("class" => NoopJob, "queue" => "staging", "args" => slice.map { |i| [i] })
end

worker = Process.spawn({ "REDIS_URL" => url, "BENCH_N" => n.to_s },
  "sidekiq", "-r", File.join(__dir__, "worker.rb"), "-c", concurrency.to_s, "-q", "default",
  out: File::NULL, err: File::NULL)
begin
  wait_for("the Sidekiq process registering", 60) { Sidekiq::ProcessSet.new.size.positive? }
  began = Time.now.to_f
  Sidekiq.redis { |r| r.rename("queue:staging", "queue:default") }
  finished = wait_for("the drain", 900) { Sidekiq.redis { |r| r.get("bench:done") } }.to_f
  cpu_after = cpu_seconds
ensure
  Process.kill("TERM", worker)
  Process.wait(worker)
end

puts JSON.generate(
  system: "sidekiq",
  version: Sidekiq::VERSION,
  n: n,
  concurrency: concurrency,
  process_jobs_per_s: (n / (finished - began)).round,
  redis_cpu_us_per_job: ((cpu_after - cpu_before) * 1e7 / n).round / 10.0
)
