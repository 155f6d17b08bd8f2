// The WebSocket echo of the example app: connect to /ws on the page's own origin (through the
// gateway, with the same session), show the greeting, send what is typed, show what comes back.
(function () {
  "use strict";
  var form = document.getElementById("echo-form");
  if (!form) {
    return;
  }
  var input = document.getElementById("echo-input");
  var send = document.getElementById("echo-send");
  var state = document.getElementById("echo-state");
  var dot = document.getElementById("echo-dot");
  var log = document.getElementById("echo-log");

  function add(kind, text) {
    var li = document.createElement("li");
    li.className = kind;
    li.textContent = text;
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function setState(text, cls, usable) {
    state.textContent = text;
    dot.className = "dot " + cls;
    input.disabled = !usable;
    send.disabled = !usable;
  }

  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var socket;
  try {
    socket = new WebSocket(scheme + location.host + "/ws");
  } catch (e) {
    setState("Could not open a WebSocket: " + e.message, "off", false);
    return;
  }
  setState("Connecting…", "", false);
  socket.addEventListener("open", function () {
    // No focus(): it would scroll the page away from who is signed in.
    setState("Connected", "on", true);
  });
  socket.addEventListener("message", function (ev) {
    add("received", typeof ev.data === "string" ? ev.data : "(binary message)");
  });
  socket.addEventListener("close", function (ev) {
    setState("Closed" + (ev.code ? " (code " + ev.code + ")" : "") + ": reload the page to connect again", "off", false);
  });
  socket.addEventListener("error", function () {
    add("info", "The connection failed (without a session the gateway refuses it).");
  });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value;
    if (!text || socket.readyState !== WebSocket.OPEN) {
      return;
    }
    socket.send(text);
    add("sent", text);
    input.value = "";
  });
})();
