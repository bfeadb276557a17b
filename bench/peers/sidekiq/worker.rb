# The no-op job the Sidekiq process of bench/peers/sidekiq/drain.rb runs
# (`sidekiq -r ./worker.rb -c 50`). Sidekiq's basic fetch removes a job from Redis with BRPOP
# and writes nothing per finished job, so the end of the drain cannot be seen in Redis until
# the next heartbeat (every 5 s); the job counts itself instead, and the N-th one writes the
# time it finished to `bench:done` (one Redis call per run).
require "sidekiq"

Redis.silence_deprecations = true # redis-rb 4.8 warns on every SADD of Sidekiq 6.4

class NoopJob
  include Sidekiq::Worker

  COUNT = ENV["BENCH_N"].to_i # set in the Sidekiq process only
  @done = 0
  @lock = Mutex.new

  def self.finished
    last = @lock.synchronize { (@done += 1) == COUNT }
    Sidekiq.redis { |r| r.set("bench:done", Time.now.to_f.to_s) } if last
  end

  def perform(_i)
    self.class.finished
  end
end
