;; infinite_loop: never returns. The sandbox must stop it at its time cap (fuel or epoch
;; deadline) and report a timeout, leaving the worker unharmed.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
