// Fetches the list of servers from the REST API and draws it. Text goes in
// with textContent, never innerHTML, so a name can hold any character and
// still be shown as text, not run as markup.
"use strict";

async function showServers() {
  const list = document.getElementById("servers");
  let infos;
  try {
    const answer = await fetch("/api/v1.0/servers");
    if (!answer.ok) {
      throw new Error("the API answered " + answer.status);
    }
    infos = (await answer.json()).infos;
  } catch (err) {
    list.replaceChildren(item("error", "could not load the servers: " + err.message));
    return;
  }
  list.replaceChildren(...infos.map((s) =>
    item("server " + s.status, s.name + " — " + s.host + ":" + s.port + " (" + s.status + ")")));
}

function item(className, text) {
  const li = document.createElement("li");
  li.className = className;
  li.textContent = text;
  return li;
}

showServers();
